#!/bin/sh
# Regenerates skiff/v1/api.proto's per-kind List, WatchEvent and service blocks.
# The head of api.proto (shared request messages) is kept as written above the first "message NamespaceList".
set -eu
cd "$(dirname "$0")/skiff/v1"
head=$(sed -n '1,/^message NamespaceList/p' api.proto | sed '$d' | sed '$d')
{
  printf '%s\n' "$head"
  for kind in Namespace Pod Deployment ReplicaSet Service Endpoints Secret ConfigMap PersistentVolumeClaim Node Event Lease Ingress IngressClass HorizontalPodAutoscaler LimitRange ServiceAccount Role ClusterRole RoleBinding ClusterRoleBinding PodDisruptionBudget; do
    cat <<BLOCK

message ${kind}List {
  ListMeta metadata = 1;
  repeated ${kind} items = 2;
}

message ${kind}WatchEvent {
  // ADDED, MODIFIED, DELETED.
  string type = 1;
  ${kind} object = 2;
}

service ${kind}Api {
  rpc Create(${kind}) returns (${kind});
  rpc Get(GetRequest) returns (${kind});
  rpc List(ListRequest) returns (${kind}List);
  rpc Update(${kind}) returns (${kind});
  rpc UpdateStatus(${kind}) returns (${kind});
  rpc Delete(DeleteRequest) returns (${kind});
  rpc Watch(WatchRequest) returns (stream ${kind}WatchEvent);
}
BLOCK
  done
} > api.proto.new
mv api.proto.new api.proto
