"""Does moto apply conditional writes atomically under parallel requests?

Threads race to bump a version counter in one DynamoDB item, each write conditional on the
version it read (optimistic concurrency, as the deactivation guard does). On a store that
applies each request atomically, every successful write bumps the version once, so the number
of successful writes equals the final version. Lost updates show as more successes than the
final version.

    .venv/bin/python tests/peers/moto/transaction_race.py [--serialized] [--filler=N] [transact|put]

Starts its own moto server (threaded like `moto_server`, or one request at a time with
--serialized) on a free loopback port.
"""

import socket
import sys
import threading
import time

import boto3
from botocore.config import Config
from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

THREADS = 12
ROUNDS = 15
FILLER = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--filler=")), 0)


def serve(serialized):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=not serialized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}"


def main():
    serialized = "--serialized" in sys.argv
    mode = "put" if "put" in sys.argv[1:] else "transact"
    endpoint = serve(serialized)
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=THREADS, retries={"max_attempts": 1}),
    )
    client.create_table(
        TableName="race",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName="race", Item={"pk": {"S": "counter"}, "version": {"N": "0"}})
    # Other items in the table (held jobs, in the guard's case): moto copies the whole table at
    # the start of each transaction, which widens the window.
    for n in range(FILLER):
        client.put_item(TableName="race", Item={"pk": {"S": f"filler#{n}"}, "doc": {"S": "x" * 400}})
    successes = []
    lock = threading.Lock()

    def write(version):
        item = {"pk": {"S": "counter"}, "version": {"N": str(version + 1)}}
        condition = {
            "ConditionExpression": "#v = :v",
            "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":v": {"N": str(version)}},
        }
        if mode == "put":
            client.put_item(TableName="race", Item=item, **condition)
        else:
            client.transact_write_items(
                TransactItems=[{"Put": {"TableName": "race", "Item": item, **condition}}]
            )

    def racer():
        for _ in range(ROUNDS):
            read = client.get_item(TableName="race", Key={"pk": {"S": "counter"}}, ConsistentRead=True)
            version = int(read["Item"]["version"]["N"])
            try:
                write(version)
            except client.exceptions.ClientError as error:
                code = error.response["Error"]["Code"]
                if code not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                    raise
                continue
            with lock:
                successes.append(version + 1)

    threads = [threading.Thread(target=racer) for _ in range(THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = int(
        client.get_item(TableName="race", Key={"pk": {"S": "counter"}}, ConsistentRead=True)["Item"]["version"]["N"]
    )
    won_twice = sorted({v for v in successes if successes.count(v) > 1})
    print(
        f"{'serialized' if serialized else 'threaded'} moto, {mode}: {len(successes)} successful "
        f"conditional writes, final version {final}, versions won more than once: {won_twice or 'none'} "
        f"({time.monotonic() - started:.1f} s)"
    )
    sys.exit(0 if len(successes) == final and not won_twice else 1)


if __name__ == "__main__":
    main()
