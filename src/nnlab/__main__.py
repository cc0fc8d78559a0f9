from nnlab.cli import main

if __name__ == "__main__":  # not when a worker process (views.painter.Painter) imports it
    raise SystemExit(main())
