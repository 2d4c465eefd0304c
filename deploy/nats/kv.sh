#!/bin/sh
# The three KV buckets of the order-status consumer, as it creates them with nats.replicas: 3 and
# the default nats.state_max_age (a test keeps these lines equal to what it creates), and the
# sweep's durable consumer on ORDERS_STATE's stream. For nats.provision: false, an operator runs
# this with admin credentials from the repository's root, e.g.:
#   NATS_URL=nats://127.0.0.1:4241 sh deploy/nats/kv.sh
set -e
nats kv add ORDERS_STATE --description="Last known status per order" --history=1 --storage=file --ttl=840h --replicas=3
nats kv add ORDERS_RATE --description="QPS slots per provider endpoint, shared by all replicas" --history=1 --storage=file --replicas=3
nats kv add ORDERS_CALLBACK_SEEN --description="Provider notifications processed, by message_id" --history=1 --storage=file --ttl=168h --replicas=3
nats consumer add KV_ORDERS_STATE --config deploy/nats/consumers/orders-sweep.json
