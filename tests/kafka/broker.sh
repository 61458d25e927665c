#!/usr/bin/env bash
# Runs one Apache Kafka broker in the foreground for the tests, the container test and the
# benchmarks: KRaft, broker and controller in one process, its data in DIR.
#
#   tests/kafka/broker.sh DIR PORT CONTROLLER_PORT [HOST KEYSTORE PASSWORD CA]
#
# Both consumer group protocols are served (classic, and KIP-848's `consumer`, its session
# shortened to the 6 s the tests give the classic one). Clients connect to 127.0.0.1:PORT
# in plain text; with HOST, KEYSTORE (PKCS12), its
# PASSWORD and the CA that signed it (PEM), over TLS instead, the broker advertising
# HOST:PORT. With SCRAM_USER and SCRAM_PASSWORD in the environment as well, the listener
# is SASL_SSL with SCRAM-SHA-512, that user seeded when the storage is formatted (as
# managed Kafka services serve it). As one node of a cluster: NODE_ID, the cluster's
# VOTERS (`ID@127.0.0.1:CONTROLLER_PORT,…`) and a CLUSTER_ID shared by every node (22
# base64url characters) in the environment. Lines in DIR/extra.properties,
# if present, are added to the broker's configuration. The jars come from
# target/setup/kafka/libs (tests/kafka/fetch.sh). The process becomes the JVM (exec), so
# that signals sent to it (SIGSTOP, SIGKILL) reach the broker.
set -euo pipefail
[ $# -eq 3 ] || [ $# -eq 7 ] || {
  echo "usage: $0 DIR PORT CONTROLLER_PORT [HOST KEYSTORE PASSWORD CA]" >&2
  exit 2
}
dir=$1 port=$2 controller=$3
libs=$(cd "$(dirname "$0")/../.." && pwd)/target/setup/kafka/libs
[ -f "$libs/.complete" ] || {
  echo "$0: Apache Kafka's jars are not in $libs: run tests/kafka/fetch.sh (./test.sh does)" >&2
  exit 1
}
mkdir -p "$dir"
scram=()
if [ $# -eq 7 ]; then
  host=$4 keystore=$5 password=$6 ca=$7
  listener=SSL
  # The truststore lets Kafka check at start that its keystore can serve a handshake.
  tls="ssl.keystore.type=PKCS12
ssl.keystore.location=$keystore
ssl.keystore.password=$password
ssl.key.password=$password
ssl.truststore.type=PEM
ssl.truststore.location=$ca
ssl.endpoint.identification.algorithm="
  if [ -n "${SCRAM_USER:-}" ]; then
    listener=SASL_SSL
    login="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$SCRAM_USER\" password=\"$SCRAM_PASSWORD\";"
    tls="$tls
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$login"
    scram=(--add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]")
  fi
else
  host=127.0.0.1 listener=PLAINTEXT tls=
fi
cat >"$dir/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=${NODE_ID:-1}
controller.quorum.voters=${VOTERS:-1@127.0.0.1:$controller}
listeners=$listener://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=$listener://$host:$port
inter.broker.listener.name=$listener
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
# How often the broker aborts transactions past their timeout (10 s by default): a killed
# instance's open transaction holds back read_committed readers until then.
transaction.abort.timed.out.transaction.cleanup.interval.ms=2000
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=6000
group.consumer.min.heartbeat.interval.ms=1000
group.consumer.heartbeat.interval.ms=1000
$tls
PROPERTIES
[ -f "$dir/extra.properties" ] && cat "$dir/extra.properties" >>"$dir/server.properties"
java=(java -Xms128m -Xmx512m -XX:+UseSerialGC -cp "$libs/*")
if [ ! -f "$dir/data/meta.properties" ]; then
  # A cluster id: 16 random bytes, base64url without padding.
  id=${CLUSTER_ID:-$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c 1-22)}
  "${java[@]}" kafka.tools.StorageTool format --cluster-id="$id" --config="$dir/server.properties" "${scram[@]}" \
    >"$dir/format.log" 2>&1 || {
    cat "$dir/format.log" >&2
    exit 1
  }
fi
exec "${java[@]}" kafka.Kafka "$dir/server.properties"
