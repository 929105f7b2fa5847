"""Storm multilang components: bolts and spouts written for Storm's JSON-over-pipes protocol
(pystorm, streamparse, Storm's storm.py / storm.js, ...) run unchanged in a Squall topology.

    from topology.multilang import ShellBolt
    b.set_bolt("split", ShellBolt(["python3", "splitsentence.py"], outputs=["word"]))

The pieces: `protocol` (framing and encoding, pure), `handshake` (the setup message),
`session` (the protocol state of one subprocess, pure), `liveness` (heartbeat, hang and
restart policies, pure), `process` (the subprocess behind non-blocking pipes) and `runner`
(one task: the subprocess, its session and its restarts, driven by the worker's loop).
"""

from topology.multilang.components import ShellBolt, ShellComponent, ShellSettings, ShellSpout

__all__ = ["ShellBolt", "ShellComponent", "ShellSettings", "ShellSpout"]
