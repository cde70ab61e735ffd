# Approval and routing: where an allowed change goes.
#   audit  -> recorded only (mode audit, nothing is mutated)
#   review -> a pull request (mode gitops), whatever the target
#   auto   -> gitops when Argo CD / Flux manages the target, else apply_mode: the applyMode
#             the configuration sets (defaults or a scoped rule), else the operator's own
#             mode (input.cluster.operatorMode: its --mode / DAKR_MODE; audit when the
#             operator has no writer, so an allowed change is recorded, not applied)
# A recommendation whose source set autoApply: false is treated as review.
package dakr.approval

import data.dakr.gitops
import data.dakr.scope

approval := scope.settings.approval

review_requested if input.recommendation.spec.autoApply == false

# (`a != "auto"` first: the common case leaves the body in two steps, before the lookup.)
mode := m if {
	a := approval
	a != "auto"
	m := {"audit": "audit", "review": "gitops"}[a]
} else := "gitops" if {
	review_requested
} else := "gitops" if {
	gitops.managed
} else := apply_mode

apply_mode := m if {
	m := scope.settings.applyMode
} else := m if {
	m := input.cluster.operatorMode
	is_string(m)
} else := "gitops"

warnings contains msg if {
	a := approval
	a != "auto"
	msg := {
		"audit": "approval is audit-only: the change is recorded, not applied",
		"review": "approval requires review: routed to a pull request",
	}[a]
}

warnings contains "the source asked for review (autoApply: false): routed to a pull request" if {
	input.recommendation.spec.autoApply == false
	approval == "auto"
}

warnings contains sprintf("managed by %s: routed to gitops so a direct patch is not reverted", [gitops.tool]) if {
	gitops.managed
	approval == "auto"
	not review_requested
	apply_mode == "direct"
}

# What is wrong with the settings' approval and applyMode: nothing, where the engine found
# the settings valid once per policy load (dakr/derived.rego; the rule index skips that
# body unless the flag is true), else checked here.
deny contains d if some d in settings_denials

settings_denials := set() if {
	data.dakr_derived.plain_approval == true
} else := invalid_settings

invalid_settings contains {"rule": "InvalidConfig", "msg": sprintf("approval %v is not one of auto, audit, review", [approval])} if {
	not approval in {"auto", "audit", "review"}
}

invalid_settings contains {"rule": "InvalidConfig", "msg": sprintf("applyMode %v is not one of direct, gitops", [m])} if {
	m := scope.settings.applyMode
	not m in {"direct", "gitops"}
}

deny contains {"rule": "InvalidConfig", "msg": sprintf("the operator's mode %v is not one of audit, direct, gitops", [m])} if {
	m := input.cluster.operatorMode
	not m in {"audit", "direct", "gitops"}
	not scope.settings.applyMode
}
