from nnlab.cli import main

if __name__ == "__main__":  # not when a worker process (figures.Painter) imports it
    raise SystemExit(main())
