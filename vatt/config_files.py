"""The one way to find and load a config file, from a checkout or an installed package.

A config is a Python file with `get_config(arg)` returning an ml_collections.ConfigDict. The
shipped ones live in the repository's top-level configs/ folder; `pip install .` installs the
same files as the package `vatt.configs`. A config is named on the command line as

  configs/pretrain.py:tiny     a file (relative to the working directory, or absolute)
  pretrain:tiny                a shipped config by name, from anywhere

and `configs/<name>.py` falls back to the shipped file of that name when no such file exists
relative to the working directory (a user outside the checkout following the README).

`arg` is "<variant>[,<option>...]"; the shipped configs understand the option `runlocal`
(small, fast settings for tests, notebooks and smoke runs on a CPU).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from typing import Sequence

import ml_collections

import vatt

_PACKAGE_DIR = os.path.dirname(os.path.abspath(vatt.__file__))


def shipped_dir() -> str:
    """The folder of the shipped configs: vatt/configs when installed, else the checkout's
    top-level configs/."""
    for candidate in (os.path.join(_PACKAGE_DIR, "configs"),
                      os.path.join(os.path.dirname(_PACKAGE_DIR), "configs")):
        if os.path.isfile(os.path.join(candidate, "pretrain.py")):
            return candidate
    raise FileNotFoundError(f"no shipped configs next to {_PACKAGE_DIR}: reinstall vatt")


def shipped_names() -> list[str]:
    """Names of the shipped configs (files not starting with "_")."""
    return sorted(f[:-3] for f in os.listdir(shipped_dir())
                  if f.endswith(".py") and not f.startswith("_"))


def resolve(spec: str) -> tuple[str, str | None]:
    """("/abs/path/of/config.py", arg or None) of a config spec (see the module docstring)."""
    path, sep, arg = spec.partition(":")
    arg_or_none = arg if sep else None
    if os.path.isfile(path):
        return os.path.abspath(path), arg_or_none
    name = os.path.basename(path)
    name = name[:-3] if name.endswith(".py") else name
    shipped = os.path.join(shipped_dir(), f"{name}.py")
    from_name = os.sep not in path and "/" not in path and not path.endswith(".py")
    from_configs = os.path.basename(os.path.dirname(path)) == "configs"
    if (from_name or from_configs) and os.path.isfile(shipped) and not name.startswith("_"):
        return shipped, arg_or_none
    raise FileNotFoundError(
        f"config {spec!r}: no such file. Name a config file (configs/pretrain.py:tiny) or a "
        f"shipped config ({', '.join(n + ':...' for n in shipped_names())}, e.g. pretrain:tiny)")


def load_module(path: str) -> types.ModuleType:
    """Executes a config file as a module of its own (configs/ is a folder of files, not
    something on sys.path), e.g. to reuse a sibling config's pieces."""
    name = "vatt_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load config file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sibling(config_file: str, name: str) -> types.ModuleType:
    """The config module `name` ("pretrain.py") next to `config_file` (a config's __file__)."""
    return load_module(os.path.join(os.path.dirname(os.path.abspath(config_file)), name))


def load(spec: str, overrides: dict | Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The ConfigDict of `spec` with overrides applied, as the command line would apply them.

    overrides: {"batch_size": 16, "model.video.num_layers": 1} or ["batch_size=16", ...].
    A key that the config does not declare is refused (like --config.<key> on the CLI).
    """
    path, arg = resolve(spec)
    module = load_module(path)
    config = module.get_config(arg) if arg is not None else module.get_config()
    items = overrides.items() if isinstance(overrides, dict) else (
        _parse_override(o) for o in overrides)
    for key, value in items:
        apply_override(config, key, value)
    return config


def _parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.removeprefix("--config.").partition("=")
    if not sep:
        raise ValueError(f"override {text!r}: use <key>=<value>")
    return key, value


def _parent_and_leaf(config: ml_collections.ConfigDict, key: str):
    """(the ConfigDict holding the dotted `key`, its last part); KeyError naming the declared
    keys when the config has no such key."""
    parent, _, leaf = key.rpartition(".")
    node = config
    for part in filter(None, parent.split(".")):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise KeyError(f"config.{key}: the config has no {part!r}; declared keys: "
                           f"{', '.join(sorted(node.keys()))}")
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise KeyError(f"config.{key}: the config has no {leaf!r}; declared keys: "
                       f"{', '.join(sorted(node.keys()))}")
    return node, leaf


def apply_override(config: ml_collections.ConfigDict, key: str, value) -> None:
    """Sets the dotted `key` of `config`; a string value is parsed to the key's type."""
    node, leaf = _parent_and_leaf(config, key)
    current = node[leaf]
    if isinstance(value, str) and not isinstance(current, str):
        value = _parse_value(value, current)
    node[leaf] = value


def check_override_keys(argv: Sequence[str], flag: str = "config") -> None:
    """Raises KeyError (one line naming the key and the declared ones) for a --<flag>.<key>
    that the config named by --<flag> does not declare: checked before absl parses, so the
    command line gets the usual one-line error instead of a traceback."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag}=")), None)
    keys = [a[len(f"--{flag}."):].split("=", 1)[0] for a in argv if a.startswith(f"--{flag}.")]
    if spec is None or not keys:
        return
    config = load(spec)
    for key in keys:
        _parent_and_leaf(config, key)


def _parse_value(text: str, current):
    import ast
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{text!r} is not a boolean")
        return text.lower() in ("true", "1")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    return value


def resolve_argv(argv: Sequence[str], flag: str = "config") -> list[str]:
    """argv with the `--<flag>=<spec>` (or `--<flag> <spec>`) value resolved to a file path, so
    ml_collections' config flag can load a shipped config named from anywhere."""
    out = list(argv)
    for i, a in enumerate(out):
        if a.startswith(f"--{flag}="):
            path, arg = resolve(a.split("=", 1)[1])
            out[i] = f"--{flag}={path}" + (f":{arg}" if arg is not None else "")
        elif a == f"--{flag}" and i + 1 < len(out):
            path, arg = resolve(out[i + 1])
            out[i + 1] = path + (f":{arg}" if arg is not None else "")
    return out


def options(arg: str | None, known: Sequence[str] = ("runlocal",)) -> tuple[list[str], set[str]]:
    """Splits a config argument "a,b,runlocal" into (positional parts, options)."""
    parts = [p for p in (arg or "").split(",") if p]
    opts = {p for p in parts if p in known}
    return [p for p in parts if p not in known], opts


if __name__ == "__main__":  # python -m vatt.config_files: where the shipped configs are
    print(shipped_dir())
    print("\n".join(shipped_names()), file=sys.stdout)
