package dakr.guardrails_disruption_test

import data.fixtures as f

pdb(name, allowed) := {"metadata": {"name": name}, "status": {"disruptionsAllowed": allowed}}

test_blocking_pdb_warns if f.warned(f.cluster("pdbs", [pdb("cart-pdb", 0)]), "PodDisruptionBudget cart-pdb allows no disruption")

test_blocking_pdb_still_allowed if f.allows(f.cluster("pdbs", [pdb("cart-pdb", 0)]))

test_open_pdb_silent if not f.warned(f.cluster("pdbs", [pdb("cart-pdb", 1)]), "PodDisruptionBudget")

test_pdb_without_status_silent if not f.warned(f.cluster("pdbs", [{"metadata": {"name": "x"}}]), "PodDisruptionBudget")

test_replica_scaling_not_warned if not f.warned(f.set(f.replica_scaling, "/cluster/pdbs", [pdb("p", 0)]), "PodDisruptionBudget")
