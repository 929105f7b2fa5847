"""Loading a topology file: a Python file that defines `topology` at module level."""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path

import cloudpickle

from topology.errors import SquallError
from topology.model import Topology


def load_topology_file(path: str) -> Topology:
    """Run the file and return its `topology`; its modules will be pickled by value.

    Modules the file imports from its own directory are shipped with it too, so a
    topology spread over a few local files works on any supervisor.
    """
    file = Path(path)
    if not file.is_file():
        raise SquallError(f"{path}: no such file")
    directory = str(file.resolve().parent)
    name = f"squall_topology_{file.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise SquallError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise SquallError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except SquallError as e:
        raise SquallError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's file may raise anything
        where = traceback.extract_tb(e.__traceback__)[-1]
        raise SquallError(
            f"{path}: {type(e).__name__}: {e} (at {where.filename}:{where.lineno})"
        ) from None
    topology = getattr(module, "topology", None)
    if topology is None:
        raise SquallError(f"{path}: defines no module-level `topology`")
    if not isinstance(topology, Topology):
        hint = " (did you forget builder.build()?)" if hasattr(topology, "set_spout") else ""
        raise SquallError(
            f"{path}: `topology` is a {type(topology).__name__}, not a built Topology{hint}"
        )
    for mod in list(sys.modules.values()):
        mod_file = getattr(mod, "__file__", None)
        if mod_file and os.path.dirname(os.path.abspath(mod_file)) == directory:
            cloudpickle.register_pickle_by_value(mod)
    return topology
