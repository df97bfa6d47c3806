# Readiness probe of a Redis Cluster node. Ready: it answers, it sees every slot served
# (cluster_state:ok), and a replica holds its master's data (link up). A restarted node is
# Ready only once it has rejoined and synced, so a rolling update or a drain (one pod at a
# time, PodDisruptionBudget) never takes the next node away before then.
#
# Not ready, it also repairs what Redis cannot: a restarted node knows its peers at the
# addresses in its nodes.conf. One pod replaced is no trouble, it tells peers that have not
# moved its new address. But when several moved at once (a node drained, a reinstall that
# kept the volumes), nobody may reach anybody. So it asks each peer, by its stable DNS name,
# for its node id and address, and CLUSTER MEETs it where it is now if this node knows it
# elsewhere: Redis then moves the known node to that address. (Here, not in a postStart
# hook: a pod's IP, and so its DNS name, is published only once postStart is done.)
# Env: REDIS_SELF (host:port of this node), REDIS_CLUSTER_NODES ("host:port ..." by name).
self=${REDIS_SELF:-127.0.0.1:6379}
cli() { # cli host:port command...
  node=$1
  shift
  redis-cli -h "${node%:*}" -p "${node##*:}" "$@" 2>/dev/null | tr -d '\r'
}

info=$(cli "$self" cluster info)
case "$info" in
  *cluster_state:ok*)
    case "$(cli "$self" info replication)" in
      *role:master* | *master_link_status:up*) exit 0 ;;
    esac
    echo "a replica not in sync with its master"
    ;;
  "") echo "not answering"; exit 1 ;;
  *) echo "cluster_state is not ok" ;;
esac

known_nodes=$(echo "$info" | sed -n 's/^cluster_known_nodes://p')
[ "${known_nodes:-1}" -gt 1 ] || exit 1 # in no cluster yet: the create Job forms it
myid=$(cli "$self" cluster myid)
mine=$(cli "$self" cluster nodes)
for peer in ${REDIS_CLUSTER_NODES:-}; do
  # the peer's own line: "<id> <ip>:<port>@<bus port>[,<hostname>] myself,..."
  line=$(cli "$peer" cluster nodes | awk '$3 ~ /myself/')
  [ -n "$line" ] || continue # not up, or its name not published yet
  id=${line%% *}
  [ "$id" != "$myid" ] || continue
  now=$(echo "$line" | awk '{ split($2, a, ","); print a[1] }')
  known=$(echo "$mine" | awk -v id="$id" '$1 == id { split($2, a, ","); print a[1] }')
  # a node this one does not know is not met: adding nodes is an operator's decision
  if [ -n "$known" ] && [ "$known" != "$now" ] && [ "${now%%:*}" != "" ]; then
    ip=${now%:*}
    ports=${now##*:}
    echo "$peer ($id) moved from $known to $now: meeting it there"
    cli "$self" cluster meet "$ip" "${ports%@*}" "${ports#*@}" >/dev/null
  fi
done
exit 1
