package dakr.execution_test

import data.fixtures as f

# live_migration: the rightsizing sample as a LiveMigration; nodegroup: remove two nodes.

test_live_defaults if f.execution(f.live_migration).liveMigration == {"fallback": "none", "persist": "webhook", "move": "none", "maxPodsResizing": 1, "deferredTimeoutSeconds": 300, "inProgressTimeoutSeconds": 3600, "resizeRunning": false}

test_live_fallback_recreate if f.execution(f.live_migration).liveMigration.fallback == "recreate" with data.config.defaults.liveMigration.fallback as "recreate"

test_live_persist_template if f.execution(f.live_migration).liveMigration.persist == "template" with data.config.defaults.liveMigration.persist as "template"

test_live_by_scoped_rule if f.execution(f.live_migration).liveMigration.fallback == "recreate" with data.config.rules as [{"name": "r", "match": {"namespaces": ["default"]}, "settings": {"liveMigration": {"fallback": "recreate"}}}]

test_live_unknown_key_dropped if not f.execution(f.live_migration).liveMigration.other with data.config.defaults.liveMigration.other as 1

test_live_bad_fallback if f.denies(f.live_migration, "InvalidConfig") with data.config.defaults.liveMigration.fallback as "evict"

test_live_bad_persist if f.denies(f.live_migration, "InvalidConfig") with data.config.defaults.liveMigration.persist as "annotation"

test_live_move_checkpoint if f.execution(f.live_migration).liveMigration.move == "checkpoint" with data.config.defaults.liveMigration.move as "checkpoint"

test_live_checkpoint_without_capability_warns if contains(concat(" ", f.shipped(f.live_migration).warnings), "liveMigration.checkpointRestore") with data.config.defaults.liveMigration.move as "checkpoint"

test_live_checkpoint_with_capability_is_quiet if count(f.shipped(object.union(f.live_migration, {"cluster": {"checkpointRestore": true}})).warnings) == 0 with data.config.defaults.liveMigration.move as "checkpoint"

test_live_bad_move if f.denies(f.live_migration, "InvalidConfig") with data.config.defaults.liveMigration.move as "evict"

test_live_bad_concurrency if f.denies(f.live_migration, "InvalidConfig") with data.config.defaults.liveMigration.maxPodsResizing as 0

test_live_resize_running if f.execution(f.live_migration).liveMigration.resizeRunning with data.config.defaults.liveMigration.resizeRunning as true

test_live_bad_resize_running if f.denies(f.live_migration, "InvalidConfig") with data.config.defaults.liveMigration.resizeRunning as "yes"

test_live_bad_timeout if f.denies(f.live_migration, "InvalidConfig") with data.config.defaults.liveMigration.deferredTimeoutSeconds as "5m"

test_live_allowed if f.allows(f.live_migration)

test_live_without_config_block if f.execution(f.live_migration).liveMigration.persist == "webhook" with data.config.defaults.liveMigration as {}

test_rightsizing_has_none if f.execution(f.rightsizing) == {}

test_nodes_mark_by_default if f.execution(f.nodegroup) == {"nodeConsolidation": "mark"}

test_nodes_drain if f.execution(f.nodegroup).nodeConsolidation == "drain" with data.config.defaults.nodes.consolidation as "drain"

test_nodes_bad_consolidation if f.denies(f.nodegroup, "InvalidConfig") with data.config.defaults.nodes.consolidation as "delete"

test_not_covered_has_none if not f.shipped(f.live_migration).execution
