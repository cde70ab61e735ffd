# Node consolidation (NodeGroupRecommendation). A node is drained only when every pod on it
# may be disrupted: no pod carries karpenter.sh/do-not-disrupt: "true" and no PDB selecting
# a pod allows zero disruptions. A node the pipeline has no facts for cannot be checked, so
# it is refused. At most maxNodesConsolidated nodes go at once, and the group never shrinks
# below its minimum size.
package dakr.nodes

import data.dakr.lib
import data.dakr.scope

p := scope.settings.nodes

default to_remove := []

to_remove := object.get(input.recommendation.spec, "nodesToRemove", [])

facts[n.name] := n if some n in input.cluster.nodes

# [node, pod] for each pod on a node to remove that has facts.
removed_pods contains [n, pod] if {
	input.recommendation.kind == "NodeGroupRecommendation"
	some n in to_remove
	some pod in facts[n].pods
}

node_group := object.get(lib.cluster, "nodeGroup", null)

deny contains {"rule": "NodeChangesDisabled", "msg": "node-group changes are disabled by policy"} if {
	input.recommendation.kind == "NodeGroupRecommendation"
	p.enabled == false
}

deny contains {"rule": "MaxNodesConsolidated", "msg": sprintf(
	"%d nodes would be removed at once; at most %v allowed", [count(to_remove), p.maxNodesConsolidated],
)} if {
	input.recommendation.kind == "NodeGroupRecommendation"
	count(to_remove) > p.maxNodesConsolidated
}

deny contains {"rule": "DoNotDisrupt", "msg": sprintf(
	"node %s runs pod %s/%s annotated karpenter.sh/do-not-disrupt", [n, pod.namespace, pod.name],
)} if {
	some [n, pod] in removed_pods
	object.get(pod, ["annotations", "karpenter.sh/do-not-disrupt"], "") == "true"
}

deny contains {"rule": "PDBBlocksDrain", "msg": sprintf(
	"node %s runs pod %s/%s whose PodDisruptionBudget allows no disruption", [n, pod.namespace, pod.name],
)} if {
	some [n, pod] in removed_pods
	pod.pdbDisruptionsAllowed == 0
}

deny contains {"rule": "NodeFactsMissing", "msg": sprintf("no facts about node %s: its pods cannot be checked", [n])} if {
	input.recommendation.kind == "NodeGroupRecommendation"
	some n in to_remove
	not facts[n]
}

target_count := input.recommendation.spec.targetNodeCount

deny contains {"rule": "NodeGroupMinSize", "msg": sprintf(
	"node group %s would shrink to %v nodes, below its minimum %v", [input.recommendation.spec.nodeGroup, target_count, node_group.minSize],
)} if {
	input.recommendation.kind == "NodeGroupRecommendation"
	input.recommendation.spec.targetNodeCount < input.cluster.nodeGroup.minSize
}

deny contains {"rule": "NodeGroupMinSize", "msg": sprintf(
	"node group %s would shrink to %v nodes, below its minimum %v", [input.recommendation.spec.nodeGroup, remaining, node_group.minSize],
)} if {
	input.recommendation.kind == "NodeGroupRecommendation"
	m := input.cluster.nodeGroup.minSize
	not target_count
	remaining := input.cluster.nodeGroup.currentSize - count(to_remove)
	remaining < m
}
