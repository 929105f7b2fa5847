"""A pystorm bolt that does what each tuple asks ("echo", "raise", "hang", "ids", ...), to
test how the host copes with every behaviour a real component can have."""

import json
import os
import sys
import time

from pystorm import Bolt

# Output before the handshake, when pystorm has not yet redirected stdout: in Storm this
# breaks the protocol and kills the component.
print("probe bolt loading")
sys.stdout.flush()


class ProbeBolt(Bolt):
    auto_ack = False

    def initialize(self, conf, context):
        self.conf = conf
        self.context = context

    def process(self, tup):
        command, _, arg = tup.values[0].partition(":")
        if command == "echo":
            self.emit([arg])
        elif command == "raise":
            raise ValueError(f"probe asked to raise ({arg})")
        elif command == "hang":
            time.sleep(3600)
        elif command == "spin":  # busy (CPU) for arg seconds, silent all along
            end = time.monotonic() + float(arg)
            while time.monotonic() < end:
                pass
            self.emit(["spun"])
        elif command == "exit":
            sys.stderr.write(f"probe exiting with status {arg}\n")
            sys.stderr.flush()
            os._exit(int(arg))
        elif command == "direct":
            self.emit(["direct"], direct_task=int(arg))
        elif command == "ids":
            ids = self.emit(["want ids"], need_task_ids=True)
            self.emit([json.dumps(ids)])
        elif command == "fail":
            self.fail(tup)
            return
        elif command == "raw":  # bytes straight to fd 1, past pystorm's stdout redirect
            os.write(1, f"raw output {arg}\n".encode())
        elif command == "print":
            print(f"printed {arg}")
        elif command == "log":
            self.log(f"logged at {arg}", level=arg)
        elif command == "metric":
            self.report_metric("probe.metric", int(arg))
        elif command == "error":
            self.send_message({"command": "error", "msg": f"probe error {arg}"})
        elif command == "context":
            self.emit([json.dumps({"conf": self.conf, "context": self.context})])
        elif command == "bigline":  # a stray line of arg bytes
            os.write(1, b"x" * int(arg) + b"\n")
        elif command == "bigmessage":  # a protocol message of arg bytes
            os.write(1, b'{"command":"log","msg":"' + b"x" * int(arg) + b'"}\nend\n')
        elif command == "stream":
            self.emit([arg], stream=arg)
        elif command == "late-anchor":
            self.ack(tup)
            self.emit(["late"], anchors=[tup])
            return
        elif command in ("crash-once", "hang-once"):  # arg: a marker file; acts if it is absent
            if not os.path.exists(arg):
                open(arg, "w").close()
                if command == "hang-once":
                    time.sleep(3600)
                sys.stderr.write(f"probe crashing once (marker {arg})\n")
                sys.stderr.flush()
                os._exit(3)
            self.emit([f"survived {os.path.basename(arg)}"])
        elif command == "badid":
            self.send_message({"command": "ack", "id": "no-such-id"})
        self.ack(tup)

    def process_tick(self, tup):
        self.emit([f"tick:{tup.values[0]}"])
        self.ack(tup)


if __name__ == "__main__":
    ProbeBolt().run()
