"""moto's server (`moto_server`), with DynamoDB's item writes made atomic.

moto evaluates a write's ConditionExpression and then applies the write
without a lock, while its server answers each request on a thread of its
own: two conditional PutItems racing for one key can both succeed, which
DynamoDB never allows. The tests of the event inbox's claims and of audit's
chain heads rest on that guarantee (one winner among many concurrent
claims), so here every DynamoDB item write runs under one lock.

    python3 testkit/moto_server.py -H 127.0.0.1 -p PORT   (moto_server's options)
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_WRITES = threading.RLock()


def _atomic(write):
    @functools.wraps(write)
    def locked(*args, **kwargs):
        with _WRITES:
            return write(*args, **kwargs)

    return locked


for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
