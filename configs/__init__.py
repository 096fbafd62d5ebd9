"""The shipped configs (installed as the package `vatt.configs`); load them by file or by name
through vatt.config_files, e.g. `python -m vatt.main --config=pretrain:tiny`."""
