#!/usr/bin/env bash
# Fetches Apache Kafka's jars (tests/kafka/pom.xml) from Maven Central into
# target/setup/kafka/libs, once; ./test.sh runs it. Needs Java 17+ and Maven.
set -euo pipefail
cd "$(dirname "$0")/../.."
libs=$PWD/target/setup/kafka/libs
# The marker holds the digest of the pom the jars came from: a changed pom fetches again.
want=$(sha256sum tests/kafka/pom.xml | cut -d' ' -f1)
[ "$(cat "$libs/.complete" 2>/dev/null)" = "$want" ] && exit 0
rm -rf "$libs"
mvn -q -B -f tests/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$libs"
echo "$want" >"$libs/.complete"
