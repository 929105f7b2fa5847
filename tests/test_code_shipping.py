"""Multilang scripts travel with the topology (cluster.resources): `squall submit` packs the
code directory, nimbus signs it with the code, each supervisor unpacks it safely and its
workers run the shell components there."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import stat
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from cluster_fixtures import ProcessCluster
from multilang.harness import HERE
from polling import wait_for

from cli.main import main as squall
from cluster.codesign import sign_code, verify_code
from cluster.memstore import MemoryClusterState
from cluster.resources import (
    CODE_DIR_KEY,
    ResourcesError,
    check_archive,
    code_dir_of,
    entries,
    has_shell_components,
    open_envelope,
    pack,
    unpack,
    wrap,
)
from nimbus import submission as sub
from nimbus.lifecycle import ACTIVE, REBALANCE, TopologyStatus, transition
from nimbus.liveness import Liveness
from nimbus.protocol import BadRequest
from nimbus.reconcile import Reconciler
from supervisor.sync import ERROR_COMPONENT, StateSync, resources_dir
from topology import Bolt, Spout, TopologyBuilder
from topology.model import Topology
from topology.multilang import ShellBolt
from worker.__main__ import read_code

SECRET = "shipping-secret"
MiB = 1 << 20


class _Spout(Spout):
    outputs = ["sentence"]


class _Bolt(Bolt):
    def process(self, tup: Any) -> None:
        pass


def shell_topology(name: str = "shipped") -> Topology:
    b = TopologyBuilder(name)
    b.set_spout("s", _Spout())
    b.set_bolt("split", ShellBolt([sys.executable, "split.py"], outputs=["word"])
               ).shuffle_grouping("s")
    return b.build(config={"topology.workers": 1})


def native_topology() -> Topology:
    b = TopologyBuilder("native")
    b.set_spout("s", _Spout())
    b.set_bolt("b", _Bolt()).shuffle_grouping("s")
    return b.build(config={"topology.workers": 1})


def make_project(root: Path) -> Path:
    """A code directory with what is shipped and what is not."""
    root.mkdir()
    (root / "split.py").write_text("print('split')\n")
    (root / "bin").mkdir()
    (root / "bin" / "run").write_text("#!/bin/sh\necho run\n")
    (root / "bin" / "run").chmod(0o755)
    (root / "data").mkdir()
    (root / "data" / "words.txt").write_text("a b c\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".env").write_text("SECRET=1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "split.cpython-311.pyc").write_bytes(b"\0" * 10)
    (root / "data" / "__pycache__").mkdir()
    outside = root.parent / "outside.txt"
    outside.write_text("not yours\n")
    (root / "leak.txt").symlink_to(outside)
    (root / "leak_dir").symlink_to(root.parent)
    (root / "alias.py").symlink_to(root / "split.py")  # inside: shipped as the file
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "loop_dir").symlink_to(root)
    return root


# --- which directory, and what of it -----------------------------------------------------------


def test_shell_components_are_found_as_instances_or_classes() -> None:
    assert has_shell_components(shell_topology())
    assert not has_shell_components(native_topology())


def test_the_code_directory_is_the_configured_one_else_the_topology_files(tmp_path: Path) -> None:
    file = str(tmp_path / "topo.py")
    assert code_dir_of({}, {}, file) == tmp_path
    assert code_dir_of({CODE_DIR_KEY: "scripts"}, {}, file) == tmp_path / "scripts"
    assert code_dir_of({CODE_DIR_KEY: "scripts"}, {CODE_DIR_KEY: "/opt/x"}, file) == Path("/opt/x")
    assert code_dir_of({CODE_DIR_KEY: None}, {}, file) == tmp_path


def test_dot_entries_pycache_and_links_out_are_not_shipped(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    names = [e.name for e in entries(root)]
    assert names == ["alias.py", "bin", "bin/run", "data", "data/words.txt", "split.py"]


def test_pack_and_unpack_keep_files_and_modes(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    data = pack(root, MiB)
    dest = tmp_path / "out"
    unpack(data, dest)
    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert found == ["alias.py", "bin", "bin/run", "data", "data/words.txt", "split.py"]
    assert (dest / "alias.py").read_text() == "print('split')\n"
    assert not (dest / "alias.py").is_symlink()
    assert os.stat(dest / "bin" / "run").st_mode & stat.S_IXUSR  # scripts stay executable
    assert not os.stat(dest / "split.py").st_mode & stat.S_IXUSR
    assert (dest / "data" / "words.txt").read_text() == "a b c\n"


def test_a_directory_over_the_bound_is_refused_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    (root / "blob.bin").write_bytes(b"x" * 5000)
    (root / "small.py").write_text("pass\n")
    with pytest.raises(ResourcesError) as e:
        pack(root, 4096)
    message = str(e.value)
    assert "\n" not in message and str(root) in message and "5,005 bytes" in message
    assert "nimbus.code.max.bytes (4,096)" in message
    for i in range(5):
        (root / f"f{i}").write_text("")
    with pytest.raises(ResourcesError, match=r"more than 4 files"):
        pack(root, MiB, max_files=4)


def test_a_missing_code_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ResourcesError, match="nope.*not a directory"):
        pack(tmp_path / "nope", MiB)


# --- hostile archives -----------------------------------------------------------------------------


def tar_of(*members: tuple[str, bytes | None, bytes], kind: bytes = tarfile.REGTYPE) -> bytes:
    """A tar.gz of (name, type, data-or-link-target) members, written as an attacker would."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, member_type, payload in members:
            info = tarfile.TarInfo(name)
            info.type = member_type or kind
            info.mode = 0o644
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = payload.decode()
                tar.addfile(info)
            elif info.type == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()


HOSTILE = {
    "dotdot": (tar_of(("ok.py", None, b"1"), ("../evil.py", None, b"x")), r"\(\.\.\)"),
    "nested-dotdot": (tar_of(("a/../../evil.py", None, b"x")), r"\(\.\.\)"),
    "absolute": (tar_of(("/tmp/evil-squall-abs.py", None, b"x")), "absolute path"),
    "symlink-out": (tar_of(("passwd", tarfile.SYMTYPE, b"/etc/passwd")), "a link"),
    "symlink-in": (tar_of(("a.py", None, b"1"), ("b.py", tarfile.SYMTYPE, b"a.py")), "a link"),
    "hardlink": (tar_of(("h", tarfile.LNKTYPE, b"/etc/passwd")), "a link"),
    "device": (tar_of(("dev", tarfile.CHRTYPE, b"")), "device"),
    "fifo": (tar_of(("fifo", tarfile.FIFOTYPE, b"")), "device, fifo"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    data, reason = HOSTILE[case]
    dest = tmp_path / "deep" / "out"
    dest.parent.mkdir()
    with pytest.raises(ResourcesError, match=reason):
        check_archive(data)
    with pytest.raises(ResourcesError, match=reason):
        unpack(data, dest)
    assert not dest.exists()
    assert not (tmp_path / "deep" / "evil.py").exists() and not (tmp_path / "evil.py").exists()
    assert not Path("/tmp/evil-squall-abs.py").exists()


def test_an_oversized_archive_is_refused_at_the_member_over_the_bound(tmp_path: Path) -> None:
    bomb = tar_of(("a", None, b"\0" * 1000), ("zeros", None, b"\0" * (2 * MiB)))
    assert len(bomb) < 10_000  # small to send, large to unpack
    with pytest.raises(ResourcesError, match="more than 1,048,576 bytes"):
        unpack(bomb, tmp_path / "out", max_bytes=MiB)
    assert not (tmp_path / "out").exists()
    many = tar_of(*((f"f{i}", None, b"") for i in range(6)))
    with pytest.raises(ResourcesError, match="more than 5 entries"):
        unpack(many, tmp_path / "out", max_files=5)
    with pytest.raises(ResourcesError, match="not a tar.gz"):
        check_archive(b"not an archive")
    with pytest.raises(ResourcesError, match="cannot unpack"):
        unpack(b"not an archive", tmp_path / "out")
    cut = tar_of(("a", None, os.urandom(50_000)))[:-20_000]  # truncated in the middle
    with pytest.raises(ResourcesError):
        check_archive(cut)
    with pytest.raises(ResourcesError, match="cannot unpack"):
        unpack(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- the envelope, and nimbus ---------------------------------------------------------------------


def test_the_envelope_opens_without_running_user_code(tmp_path: Path) -> None:
    assert open_envelope(wrap(b"code", resources=b"tgz")) == {
        "squall.code.envelope": 1, "code": b"code", "resources": b"tgz"}
    assert open_envelope(wrap(b"code", code_dir="/d"))["code_dir"] == "/d"  # type: ignore[index]
    marker = tmp_path / "ran"

    class Bomb:
        def __reduce__(self) -> tuple[Any, tuple[str, str]]:
            return (open, (str(marker), "w"))

    assert open_envelope(cloudpickle.dumps({"topology": Bomb(), "conf": {}})) is None
    assert not marker.exists()
    assert open_envelope(pickle.dumps({"code": b"x"})) is None  # not marked as an envelope
    assert open_envelope(b"garbage") is None


def test_nimbus_keeps_the_archive_in_the_signed_code(tmp_path: Path) -> None:
    topology, archive = shell_topology(), pack(make_project(tmp_path / "p"), MiB)
    body = cloudpickle.dumps({"topology": topology, "overrides": {}, "resources": archive})
    got, overrides, resources = sub.unpack(body)
    assert got.name == "shipped" and overrides == {} and resources == archive
    package = sub.unpack_code(sub.code_blob(topology, {"k": 1}, resources))
    assert package["resources"] == archive and package["conf"] == {"k": 1}
    assert package["topology"].name == "shipped"
    plain = sub.code_blob(topology, {"k": 1})  # without resources: the package as before
    assert cloudpickle.loads(plain)["conf"] == {"k": 1} and open_envelope(plain) is None
    assert "resources" not in sub.unpack_code(plain)
    assert sub.unpack(cloudpickle.dumps({"topology": topology}))[2] is None


@pytest.mark.parametrize("resources,match", [
    ("a string", "must be bytes"), ([1, 2], "must be bytes"),
    (HOSTILE["dotdot"][0], r"refusing to unpack"), (b"junk", "not a tar.gz")])
def test_nimbus_refuses_bad_resources_in_one_line(resources: Any, match: str) -> None:
    body = cloudpickle.dumps({"topology": shell_topology(), "resources": resources})
    with pytest.raises(BadRequest, match=match) as e:
        sub.unpack(body)
    assert "\n" not in str(e.value)


def test_a_rebalance_keeps_the_shipped_directory(tmp_path: Path) -> None:
    state = MemoryClusterState()
    state.register_supervisor("sup", {"host": "h", "ports": [1, 2, 3]})
    topology, archive = shell_topology(), pack(make_project(tmp_path / "p"), MiB)
    conf = {"topology.workers": 1, "topology.acker.executors": 0}
    meta = sub.make_meta("t-1", topology, conf, TopologyStatus(ACTIVE), 0, "me", 1)
    state.put_code("t-1", sign_code(sub.code_blob(topology, conf, archive), SECRET))
    state.set_topology("t-1", meta)
    r = Reconciler("n", Liveness(5, 30, 5, blind_after=3), SECRET)
    r.run(state, 0.0)
    status = transition(TopologyStatus(ACTIVE), REBALANCE, 1.0, 0)
    state.set_topology("t-1", {**sub.with_status(meta, status),
                               "rebalance": {"workers": 2, "parallelism": {"split": 2}}})
    r.run(state, 2.0)
    assert state.topology("t-1")["code_version"] == 2
    code = state.get_code("t-1")
    assert code is not None
    package = sub.unpack_code(verify_code(code, SECRET))
    assert package["conf"]["topology.workers"] == 2 and package["resources"] == archive
    state.close()


# --- the supervisor -------------------------------------------------------------------------------


@pytest.fixture
def assigned(tmp_path: Path) -> Iterator[Callable[[bytes], tuple[MemoryClusterState, StateSync]]]:
    """`assigned(signed_code)`: a topology t-1 with that code, assigned to supervisor "sup",
    and that supervisor's StateSync (not started: the test drives its refreshes)."""
    made: list[tuple[MemoryClusterState, StateSync]] = []

    def make(signed: bytes) -> tuple[MemoryClusterState, StateSync]:
        state = MemoryClusterState()
        state.register_supervisor("sup", {"host": "127.0.0.1", "ports": [7001]})
        topology = shell_topology()
        conf = {"topology.workers": 1, "topology.acker.executors": 0}
        state.put_code("t-1", signed)
        state.set_topology("t-1", sub.make_meta("t-1", topology, conf, TopologyStatus(ACTIVE),
                                                0, "me", 1))
        Reconciler("n", Liveness(5, 30, 5, blind_after=3), SECRET).run(state, 0.0)
        sync = StateSync(state, "sup", [7001], str(tmp_path / "home" / "code"), 60, 1, SECRET,
                         venv_dir=str(tmp_path / "home" / "venvs"))
        made.append((state, sync))
        return state, sync

    yield make
    for state, sync in made:
        sync.close()
        state.close()


def code_blob_with(resources: bytes) -> bytes:
    conf = {"topology.workers": 1, "topology.acker.executors": 0}
    return sign_code(sub.code_blob(shell_topology(), conf, resources), SECRET)


def test_the_supervisor_unpacks_once_and_its_worker_runs_there(
        tmp_path: Path, assigned: Callable[[bytes], tuple[MemoryClusterState, StateSync]]
) -> None:
    state, sync = assigned(code_blob_with(pack(make_project(tmp_path / "p"), MiB)))
    sync._refresh()
    (want,) = sync.wanted()[1].values()  # type: ignore[union-attr]
    assert want.code_path is not None
    where = resources_dir(Path(want.code_path))
    assert where.parent == tmp_path / "home" / "code"
    assert (where / "split.py").read_text() == "print('split')\n"
    assert os.stat(where / "bin" / "run").st_mode & stat.S_IXUSR
    package = read_code(want.code_path)  # what the worker loads
    assert package["conf"][CODE_DIR_KEY] == str(where)
    assert package["topology"].name == "shipped"
    cached = open_envelope(Path(want.code_path).read_bytes())
    assert cached is not None and "resources" not in cached  # not kept twice
    (where / "split.py").write_text("changed")
    sync._refresh()  # cached: not unpacked again
    assert (where / "split.py").read_text() == "changed"
    state.remove_assignment("t-1")
    sync._refresh()
    assert not where.exists() and not list((tmp_path / "home" / "code").iterdir())


def test_the_supervisor_refuses_a_hostile_archive_even_when_signed(
        tmp_path: Path, assigned: Callable[[bytes], tuple[MemoryClusterState, StateSync]]
) -> None:
    state, sync = assigned(code_blob_with(HOSTILE["symlink-out"][0]))
    sync._refresh()
    (want,) = sync.wanted()[1].values()  # type: ignore[union-attr]
    assert want.code_path is None  # never run
    assert not list((tmp_path / "home" / "code").iterdir())
    sync._upload(0.0)
    (error,) = state.errors("t-1")[ERROR_COMPONENT]
    assert "'passwd': a link; refusing to unpack it" in error["error"]


def test_a_worker_refuses_to_start_without_its_code_directory(tmp_path: Path) -> None:
    inner = cloudpickle.dumps({"topology": shell_topology(), "conf": {}})
    path = tmp_path / "code.pkl"
    path.write_bytes(wrap(inner, code_dir=str(tmp_path / "gone")))
    with pytest.raises(FileNotFoundError, match="gone is missing"):
        read_code(str(path))
    path.write_bytes(inner)
    assert CODE_DIR_KEY not in read_code(str(path))["conf"]  # a package as before


# --- squall submit --------------------------------------------------------------------------------


def test_submit_refuses_a_code_directory_over_the_bound(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "topo.py").write_text(SHIPPED_TOPOLOGY.format(python=sys.executable))
    (project / "data.bin").write_bytes(b"\0" * 3000)
    # nimbus is nowhere: the refusal comes before any connection
    code = squall(["submit", str(project / "topo.py"), "-c", "nimbus.code.max.bytes=2048",
                   "-c", "nimbus.seeds=['127.0.0.1:9']"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"{project}: the code directory" in err and "bytes in 2 files" in err


SHIPPED_TOPOLOGY = """\
from topology import Spout, TopologyBuilder
from topology.multilang import ShellBolt


class Sentences(Spout):
    outputs = ["sentence"]

    def open(self, conf, context):
        self.n = 0

    def next_tuple(self):
        if self.n < 200:
            self.n += 1
            self.emit([f"sentence number {{self.n}}"], msg_id=self.n)


b = TopologyBuilder("shipped")
b.set_spout("sentences", Sentences())
b.set_bolt("split", ShellBolt(["bin/split"], outputs=["word"])).shuffle_grouping("sentences")
topology = b.build(config={{"topology.workers": 1}})
"""


def shell_figures(cluster: ProcessCluster, tid: str) -> dict[str, Any] | None:
    for hb in cluster.current_heartbeats(tid).values():
        for e in hb.get("executors", []):
            if e.get("component") == "split" and e.get("shell", {}).get("pid"):
                return {"acked": int(e.get("acked") or 0), "pid": e["shell"]["pid"]}
    return None


@pytest.mark.timeout(180)
def test_scripts_travel_to_the_supervisor(make_cluster: Callable[..., ProcessCluster],
                                          tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    topology_file = project / "shipped_topology.py"
    topology_file.write_text(SHIPPED_TOPOLOGY.format())
    (project / "bin").mkdir()
    script = project / "bin" / "split"  # run as a program: its mode must travel
    script.write_text(f"#!{sys.executable}\n" + (HERE / "split_bolt.py").read_text())
    script.chmod(0o755)
    cluster = make_cluster(supervisors=1)
    cluster.cli("submit", str(topology_file))
    shutil.rmtree(project)  # nothing of it is left on this host
    tid = cluster.cli_json("status", "shipped")["id"]
    first = wait_for(lambda: shell_figures(cluster, tid), 90, "the shell bolt's heartbeat")
    wait_for(lambda: (f := shell_figures(cluster, tid)) and f["acked"] > 0, 60,
             "tuples acked by the shell bolt")
    cwd = Path(psutil.Process(first["pid"]).cwd())
    assert cwd.is_relative_to(cluster.dir) and cwd.name.endswith(".resources")
    assert (cwd / "bin" / "split").exists() and not (cwd / "shipped_topology.pyc").exists()
    status = cluster.cli_json("status", "shipped")
    assert not status["errors"], status["errors"]
    cluster.cli("kill", "shipped", "-w", "0")
    wait_for(lambda: not cwd.exists(), 30, "the unpacked directory removed with the code")
