"""The config tree, shipped inside the package (composed with config_path="pkg://nnlab.conf")."""
