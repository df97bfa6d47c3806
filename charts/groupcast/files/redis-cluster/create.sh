# Forms the in-chart Redis Cluster (the redis-cluster-create Job; POSIX sh + redis-cli, so
# it runs in any Redis image). Run again it changes nothing, so the chart runs it on every
# install and upgrade:
#   - no node in a cluster yet (a new install): `redis-cli --cluster create` over the
#     nodes' own announced addresses (CLUSTER MEET takes IPs, not names), each master
#     with REDIS_CLUSTER_REPLICAS replicas;
#   - every node in a cluster already (an upgrade, a rerun): nothing to create;
#   - some in, some not: stop and say so (the node count changed after the install).
# Either way it then waits until every node sees every slot served and shows the check.
# Env: REDIS_CLUSTER_NODES ("host:port host:port ...", every node by its stable name),
# REDIS_CLUSTER_REPLICAS. The Job's activeDeadlineSeconds bounds every wait below.
set -eu
: "${REDIS_CLUSTER_NODES:?}" "${REDIS_CLUSTER_REPLICAS:?}"

cli() { # cli host:port command...
  node=$1
  shift
  redis-cli -h "${node%:*}" -p "${node##*:}" "$@" 2>&1 | tr -d '\r'
}

field() { # field name <<< "CLUSTER INFO text"
  sed -n "s/^$1://p"
}

for node in $REDIS_CLUSTER_NODES; do
  until [ "$(cli "$node" ping)" = PONG ]; do
    echo "waiting for $node to answer"
    sleep 2
  done
done

in_cluster=0
outside=""
addresses=""
for node in $REDIS_CLUSTER_NODES; do
  info=$(cli "$node" cluster info)
  if [ "$(echo "$info" | field cluster_known_nodes)" -gt 1 ] ||
    [ "$(echo "$info" | field cluster_slots_assigned)" -gt 0 ]; then
    in_cluster=$((in_cluster + 1))
  else
    outside="$outside $node"
  fi
  # "<id> <ip>:<port>@<bus port>[,<hostname>] myself,..." (the ip is empty until the
  # node's first cron tick after start has applied cluster-announce-ip)
  until address=$(cli "$node" cluster nodes | awk '$3 ~ /myself/ { split($2, a, "@"); print a[1] }') &&
    [ -n "$address" ] && [ "${address%:*}" != "" ]; do
    sleep 1
  done
  addresses="$addresses $address"
done

total=0
for node in $REDIS_CLUSTER_NODES; do total=$((total + 1)); done
if [ "$in_cluster" -eq 0 ]; then
  echo "creating the cluster:$addresses, $REDIS_CLUSTER_REPLICAS replica(s) per master"
  # shellcheck disable=SC2086  # one argument per address
  redis-cli --cluster create $addresses --cluster-replicas "$REDIS_CLUSTER_REPLICAS" --cluster-yes
elif [ "$in_cluster" -eq "$total" ]; then
  echo "every node is in the cluster already: nothing to create"
else
  echo "ERROR: $in_cluster of $total nodes are in the cluster; not in it:$outside." >&2
  echo "Nodes are not added by this Job (the node count changed after the install?):" >&2
  echo "add them with redis-cli --cluster add-node, then redis-cli --cluster rebalance." >&2
  exit 1
fi

first=${addresses# }
first=${first%% *}
for node in $REDIS_CLUSTER_NODES; do
  until [ "$(cli "$node" cluster info | field cluster_state)" = ok ]; do
    echo "waiting for $node to see every slot served"
    sleep 1
  done
done
until check=$(redis-cli --cluster check "$first" 2>&1); do
  echo "$check" | grep -E '^\[(ERR|WARNING)\]' || true
  echo "waiting for redis-cli --cluster check to pass"
  sleep 2
done
echo "$check"
