"""A fast SQS-compatible server for the benchmarks: the SQS JSON protocol (what botocore speaks)
in front of the core's MemoryQueue. moto is far too slow to benchmark a router against
(toolchain.md: tens to hundreds of messages per second), and no faster emulator is available
from the registries this machine reaches.

What it does: CreateQueue, GetQueueUrl, SendMessage(Batch), ReceiveMessage (long polling, up to
10, per-call visibility), DeleteMessage(Batch), ChangeMessageVisibility(Batch),
GetQueueAttributes, PurgeQueue. A FIFO queue's message group is held while one of its
messages is in flight, as SQS does (the MemoryQueue's BLOCK_ON_ERROR lines have exactly that
behaviour); deduplication ids are honoured for 5 minutes; a standard queue has no order. It is a
benchmark tool, not an SQS emulator: no IAM, no dead-letter queues, no message attributes.

    python tools/bench/sqs_server.py [--port 0]      prints "PORT <n>", runs until SIGTERM
"""

import argparse
import asyncio
import hashlib
import json
import signal
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowcatalyst.core.memqueue import MemoryQueue  # noqa: E402
from flowcatalyst.core.message import BLOCK_ON_ERROR, IMMEDIATE, Message  # noqa: E402
from flowcatalyst.core.ports import ReceiptHandleError  # noqa: E402

ACCOUNT = "000000000000"


class SqsError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.status = status


class Queues:
    def __init__(self, base_url):
        self.base_url = base_url
        self.queues = {}  # name -> (MemoryQueue, fifo)

    def url(self, name):
        return "%s/%s/%s" % (self.base_url, ACCOUNT, name)

    def find(self, queue_url):
        name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        if name not in self.queues:
            raise SqsError("AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.")
        return self.queues[name]

    # -- operations -------------------------------------------------------------------------------

    async def CreateQueue(self, req):
        name = req["QueueName"]
        attrs = req.get("Attributes") or {}
        if name not in self.queues:
            fifo = name.endswith(".fifo")
            queue = MemoryQueue(name, visibility_timeout=int(attrs.get("VisibilityTimeout", 30)), max_receive_count=10**9, wait_seconds=0)
            self.queues[name] = (queue, fifo)
        return {"QueueUrl": self.url(name)}

    async def GetQueueUrl(self, req):
        if req["QueueName"] not in self.queues:
            raise SqsError("AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.")
        return {"QueueUrl": self.url(req["QueueName"])}

    def _put(self, queue, fifo, entry):
        body = entry["MessageBody"]
        message_id = str(uuid.uuid4())
        group = entry.get("MessageGroupId") if fifo else None
        message = Message(message_id, "sqs://", message_group_id=group, dispatch_mode=BLOCK_ON_ERROR if group else IMMEDIATE, payload=body)
        queue.put(message, entry.get("MessageDeduplicationId") or (hashlib.sha256(body.encode()).hexdigest() if fifo else message_id))
        return {"MessageId": message_id, "MD5OfMessageBody": hashlib.md5(body.encode()).hexdigest()}

    async def SendMessage(self, req):
        queue, fifo = self.find(req["QueueUrl"])
        return self._put(queue, fifo, req)

    async def SendMessageBatch(self, req):
        queue, fifo = self.find(req["QueueUrl"])
        done = []
        for entry in req["Entries"]:
            result = self._put(queue, fifo, entry)
            result["Id"] = entry["Id"]
            done.append(result)
        return {"Successful": done, "Failed": []}

    async def ReceiveMessage(self, req):
        queue, _ = self.find(req["QueueUrl"])
        batch = await queue.poll(min(int(req.get("MaxNumberOfMessages", 1)), 10), wait=float(req.get("WaitTimeSeconds", 0)))
        visibility = req.get("VisibilityTimeout")
        out = []
        for m in batch:
            if visibility is not None:
                await queue.extend_visibility(m.receipt_handle, int(visibility))
            body = m.message.payload
            attributes = {"ApproximateReceiveCount": str(m.receive_count), "SentTimestamp": "0"}
            if m.message.message_group_id:
                attributes["MessageGroupId"] = m.message.message_group_id
            out.append(
                {
                    "MessageId": m.message.id,
                    "ReceiptHandle": m.receipt_handle,
                    "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
                    "Body": body,
                    "Attributes": attributes,
                }
            )
        return {"Messages": out} if out else {}

    async def _answer(self, queue, handle, action, visibility=None):
        try:
            if action == "delete":
                await queue.ack(handle)
            else:
                await queue.defer(handle, visibility)  # back in line, as SQS keeps the group held
        except ReceiptHandleError:
            raise SqsError("ReceiptHandleIsInvalid", "The input receipt handle %r is not valid." % handle) from None

    async def DeleteMessage(self, req):
        queue, _ = self.find(req["QueueUrl"])
        await self._answer(queue, req["ReceiptHandle"], "delete")
        return {}

    async def DeleteMessageBatch(self, req):
        return await self._batch(req, "delete")

    async def ChangeMessageVisibility(self, req):
        queue, _ = self.find(req["QueueUrl"])
        await self._answer(queue, req["ReceiptHandle"], "visibility", int(req["VisibilityTimeout"]))
        return {}

    async def ChangeMessageVisibilityBatch(self, req):
        return await self._batch(req, "visibility")

    async def _batch(self, req, action):
        queue, _ = self.find(req["QueueUrl"])
        done, failed = [], []
        for entry in req["Entries"]:
            try:
                await self._answer(queue, entry["ReceiptHandle"], action, int(entry.get("VisibilityTimeout", 0)))
                done.append({"Id": entry["Id"]})
            except SqsError as e:
                failed.append({"Id": entry["Id"], "Code": e.code, "Message": str(e), "SenderFault": True})
        return {"Successful": done, "Failed": failed}

    async def GetQueueAttributes(self, req):
        queue, fifo = self.find(req["QueueUrl"])
        m = await queue.metrics()
        return {
            "Attributes": {
                "ApproximateNumberOfMessages": str(m["pending"]),
                "ApproximateNumberOfMessagesNotVisible": str(m["in_flight"]),
                "ApproximateNumberOfMessagesDelayed": str(m["delayed"]),
                "VisibilityTimeout": str(queue.visibility_timeout),
                "FifoQueue": "true" if fifo else "false",
            }
        }

    async def PurgeQueue(self, req):
        queue, fifo = self.find(req["QueueUrl"])
        name = queue.identifier
        self.queues[name] = (MemoryQueue(name, visibility_timeout=queue.visibility_timeout, max_receive_count=10**9, wait_seconds=0), fifo)
        return {}


class Connection(asyncio.Protocol):
    def __init__(self, queues):
        self.queues = queues
        self.buf = b""
        self.transport = None
        self.busy = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1")
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buf) < end + 4 + length:
            return
        body = self.buf[end + 4 : end + 4 + length]
        self.buf = self.buf[end + 4 + length :]
        self.busy = True
        asyncio.ensure_future(self._handle(headers.get("x-amz-target", ""), body))

    async def _handle(self, target, body):
        operation = target.rpartition(".")[2]
        try:
            handler = getattr(self.queues, operation, None)
            if handler is None or operation.startswith("_"):
                raise SqsError("InvalidAction", "operation %r is not supported by this benchmark server" % operation)
            status, payload = 200, await handler(json.loads(body or b"{}"))
        except SqsError as e:
            status, payload = e.status, {"__type": "com.amazonaws.sqs#" + e.code, "message": str(e)}
        except (KeyError, ValueError) as e:
            status, payload = 400, {"__type": "com.amazonaws.sqs#InvalidParameterValue", "message": repr(e)}
        out = json.dumps(payload).encode()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (status, str(uuid.uuid4()).encode(), len(out), out)
            )
        self.busy = False
        self._next()

    def connection_lost(self, exc):
        self.transport = None


async def serve(host, port):
    loop = asyncio.get_running_loop()
    holder = {}
    server = await loop.create_server(lambda: Connection(holder["queues"]), host, port, backlog=256)
    real_port = server.sockets[0].getsockname()[1]
    holder["queues"] = Queues("http://%s:%d" % (host, real_port))
    print("PORT %d" % real_port, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
