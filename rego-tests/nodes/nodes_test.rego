package dakr.nodes_test

import data.fixtures as f

# nodegroup: remove node-a and node-b from default-pool (5 -> 3, minimum 2).

test_consolidation_allowed if f.allows(f.nodegroup)

test_do_not_disrupt if f.denies(f.node_pod(1, 0, "annotations", {"karpenter.sh/do-not-disrupt": "true"}), "DoNotDisrupt")

test_do_not_disrupt_false if not f.denies(f.node_pod(1, 0, "annotations", {"karpenter.sh/do-not-disrupt": "false"}), "DoNotDisrupt")

test_pdb_zero if f.denies(f.node_pod(0, 0, "pdbDisruptionsAllowed", 0), "PDBBlocksDrain")

test_pdb_allows_one if not f.denies(f.node_pod(0, 0, "pdbDisruptionsAllowed", 1), "PDBBlocksDrain")

test_pod_without_pdb if not f.denies(f.nodegroup, "PDBBlocksDrain")

test_kept_node_not_checked if not f.denies(f.removing(["node-b"]), "PDBBlocksDrain") with data.fixtures.nodegroup as f.node_pod(0, 0, "pdbDisruptionsAllowed", 0)

test_too_many_nodes if f.denies(f.removing(["node-a", "node-b", "node-c"]), "MaxNodesConsolidated")

test_limit_configurable if not f.denies(f.removing(["node-a", "node-b", "node-c"]), "MaxNodesConsolidated") with data.config.defaults.nodes.maxNodesConsolidated as 3

test_unknown_node if f.denies(f.removing(["node-a", "node-z"]), "NodeFactsMissing")

test_below_group_minimum if f.denies(f.set(f.nodegroup, "/recommendation/spec/targetNodeCount", 1), "NodeGroupMinSize")

test_at_group_minimum if not f.denies(f.set(f.nodegroup, "/recommendation/spec/targetNodeCount", 2), "NodeGroupMinSize")

test_minimum_from_current_size if f.denies(json.remove(f.set(f.nodegroup, "/cluster/nodeGroup/currentSize", 3), ["/recommendation/spec/targetNodeCount"]), "NodeGroupMinSize")

test_current_size_fine if not f.denies(json.remove(f.nodegroup, ["/recommendation/spec/targetNodeCount"]), "NodeGroupMinSize")

test_no_group_facts if not f.denies(f.set(f.nodegroup, "/cluster/nodeGroup", null), "NodeGroupMinSize")

test_nodes_disabled if f.denies(f.nodegroup, "NodeChangesDisabled") with data.config.defaults.nodes.enabled as false

test_workloads_ignore_node_rules if count(data.dakr.nodes.deny) == 0 with input as f.rightsizing
