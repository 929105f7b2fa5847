"""Storm multilang, the pure parts: framing and stray output, encoders, the handshake."""

from __future__ import annotations

import json

import pytest

from topology import Bolt, Spout, TopologyBuilder
from topology.multilang import ShellBolt
from topology.multilang.handshake import component_conf, context_json, setup_info
from topology.multilang.protocol import (
    Decoder,
    ProtocolError,
    TupleEncoder,
    encode,
    encode_task_ids,
)

MAX = 1 << 16


def frame(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\nend\n"


def feed_all(data: bytes, chunks: list[int] | None = None, max_bytes: int = MAX):
    """Feed `data` cut at the given sizes (or whole); return all messages and stray lines."""
    d = Decoder(max_bytes)
    messages, stray = [], []
    pos = 0
    for size in chunks or [len(data)]:
        m, s = d.feed(data[pos:pos + size])
        messages += m
        stray += s
        pos += size
    if pos < len(data):
        m, s = d.feed(data[pos:])
        messages += m
        stray += s
    return messages, stray


STREAM = (
    b"loading the bolt\n"
    + frame({"pid": 42})
    + frame({"command": "emit", "tuple": ["a"], "anchors": ["1"]})
    + b"print without a protocol\n"
    + frame({"command": "ack", "id": "1"})
    + frame([1, 2])
)
EXPECTED = (
    [{"pid": 42}, {"command": "emit", "tuple": ["a"], "anchors": ["1"]},
     {"command": "ack", "id": "1"}, [1, 2]],
    ["loading the bolt", "print without a protocol"],
)


def test_decoder_finds_messages_and_stray_lines():
    assert feed_all(STREAM) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_decoder_gives_the_same_whatever_the_read_boundaries(cut):
    assert feed_all(STREAM, [cut]) == EXPECTED


def test_decoder_byte_by_byte():
    assert feed_all(STREAM, [1] * len(STREAM)) == EXPECTED


def test_bulk_and_line_by_line_paths_agree():
    many = b"".join(frame({"command": "emit", "tuple": [i]}) for i in range(500))
    whole, _ = feed_all(many)
    pieces, _ = feed_all(many, [97] * (len(many) // 97))
    assert whole == pieces == [{"command": "emit", "tuple": [i]} for i in range(500)]


def test_multi_line_message_is_joined():
    text = json.dumps({"command": "log", "msg": "hi"}, indent=2).encode()
    assert feed_all(text + b"\nend\n") == ([{"command": "log", "msg": "hi"}], [])


def test_json_looking_stray_line_before_a_message():
    data = b'{"just": "printed"}\n' + frame({"command": "sync"})
    assert feed_all(data) == ([{"command": "sync"}], ['{"just": "printed"}'])


def test_json_looking_stray_line_followed_by_output():
    data = b'[1, 2]\nmore output\n' + frame({"command": "sync"})
    assert feed_all(data) == ([{"command": "sync"}], ["[1, 2]", "more output"])


def test_multi_line_python_repr_is_stray():
    data = b"{'a': 1,\n 'b': 2}\n" + frame({"command": "sync"})
    assert feed_all(data) == ([{"command": "sync"}], ["{'a': 1,", " 'b': 2}"])


def test_message_after_output_without_newline_is_salvaged():
    data = b'progress: 50%' + frame({"command": "ack", "id": "7"})
    messages, stray = feed_all(data)
    assert messages == [{"command": "ack", "id": "7"}]
    assert stray == ['progress: 50%{"command": "ack", "id": "7"}']


def test_bare_end_and_scalars_are_stray():
    assert feed_all(b"end\n123\nend\n") == ([], ["end", "123", "end"])


def test_crlf_line_endings():
    assert feed_all(b'{"command": "sync"}\r\nend\r\nhello\r\n') == (
        [{"command": "sync"}], ["hello"])


def test_invalid_utf8_in_output_is_shown_replaced():
    assert feed_all(b"bad \xff byte\n") == ([], ["bad \ufffd byte"])


def test_over_long_stray_line_is_cut_and_the_stream_goes_on():
    d = Decoder(1000)
    stray = []
    for _ in range(100):  # 100 kB on one line, in 1 kB reads
        m, s = d.feed(b"x" * 1000)
        assert m == [] and s == []
        assert d._partial_size + d._size <= 2000  # bounded, whatever the line's length
    m, s = d.feed(b"x\n" + frame({"command": "sync"}))
    stray += s
    assert m == [{"command": "sync"}]
    assert len(stray) == 1 and stray[0].endswith("(a line of 100001 bytes, cut)")


def test_over_long_message_is_a_protocol_error():
    d = Decoder(1000)
    d.feed(b'{"command": "emit", "tuple": ["')
    with pytest.raises(ProtocolError, match="more than 1000 bytes"):
        for _ in range(5):
            d.feed(b"y" * 400)


def test_over_long_multi_line_message_is_a_protocol_error():
    d = Decoder(1000)
    with pytest.raises(ProtocolError, match="without its `end` line"):
        for _ in range(10):
            d.feed(b'{"a":\n' + b" " * 200 + b"\n")


def test_encoders():
    assert encode({"command": "next"}) == b'{"command":"next"}\nend\n'
    assert encode_task_ids([3, 4]) == b"[3,4]\nend\n"
    assert encode_task_ids([]) == b"[]\nend\n"
    data = TupleEncoder("split", "default").encode("12", 3, ("caf\u00e9", 1, None))
    assert data.endswith(b"\nend\n")
    assert json.loads(data[:-5]) == {"comp": "split", "stream": "default", "task": 3,
                                     "id": "12", "tuple": ["caf\u00e9", 1, None]}
    with pytest.raises(TypeError):
        TupleEncoder("split", "default").encode("13", 3, [b"bytes are not JSON"])


# --------------------------------------------------------------------------- handshake


class Sentences(Spout):
    outputs = {"default": ["sentence"], "control": ["cmd"]}


class Count(Bolt):
    outputs = ["word", "count"]

    def process(self, tup):
        pass


def probe_topology():
    b = TopologyBuilder("hs")
    b.set_spout("sentences", Sentences(), parallelism=2)
    split = ShellBolt(["python3", "split.py"], outputs={"default": ["word"], "lengths": ["n"]})
    (b.set_bolt("split", split, parallelism=2)
     .shuffle_grouping("sentences").global_grouping("sentences", "control"))
    b.set_bolt("count", Count(), parallelism=2).fields_grouping("split", ["word"])
    b.set_bolt("direct", Count(), parallelism=1).direct_grouping("split")
    b.set_bolt("lengths", Count()).all_grouping("split", "lengths")
    return b.build(config={"topology.workers": 1})


def test_context_is_storms():
    topo = probe_topology()
    tasks = topo.component_tasks()
    task = tasks["split"][1]
    ctx = context_json(topo, "split", task, tasks)
    assert ctx["taskid"] == task and ctx["componentid"] == "split"
    assert ctx["task->component"][str(task)] == "split"
    assert ctx["task->component"]["-1"] == "__system"
    assert {c for c in ctx["task->component"].values()} >= {"sentences", "count", "__acker"}
    assert ctx["streams"] == ["default", "lengths"]
    assert ctx["stream->outputfields"] == {"default": ["word"], "lengths": ["n"]}
    assert ctx["stream->target->grouping"] == {
        "default": {"count": {"type": "FIELDS", "fields": ["word"]},
                    "direct": {"type": "DIRECT"}},
        "lengths": {"lengths": {"type": "ALL"}},
    }
    assert ctx["source->stream->grouping"] == {
        "sentences": {"default": {"type": "SHUFFLE"},
                      "control": {"type": "FIELDS", "fields": []}}}
    assert ctx["source->stream->fields"] == {
        "sentences": {"default": ["sentence"], "control": ["cmd"]}}
    json.dumps(ctx)  # all of it goes on the wire


def test_setup_info_and_conf():
    topo = probe_topology()
    conf = {"topology.message.timeout.secs": 30, "topology.myapp.db": "x", "pystorm.log.level":
            "debug", "cluster.secret": "s3cret", "worker.batch.size": 10,
            "zookeeper.servers": ["z:1"], "topology.odd": object()}
    info = setup_info(topo, "split", 3, topo.component_tasks(), conf, "/tmp/pids")
    assert set(info) == {"conf", "pidDir", "context"}
    assert info["pidDir"] == "/tmp/pids"
    assert info["conf"] == {"topology.message.timeout.secs": 30, "topology.myapp.db": "x",
                            "pystorm.log.level": "debug", "topology.name": "hs"}
    assert "s3cret" not in json.dumps(info)
    assert component_conf({}, "t") == {"topology.name": "t"}
