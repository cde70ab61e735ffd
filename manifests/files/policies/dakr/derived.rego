# Values derived from the configuration alone (data.config: the settings of the defaults
# and of each scoped rule, their guardrails, the per-resource bounds), which no input
# changes. The embedded engine (reconciler/adapters/opa/embedded.py) evaluates this
# document once each time it loads the policy set, data included, and places it at
# data.dakr_derived; the rules read a value there (scope.view) when it is present and
# compute it themselves otherwise (the Rego test runner, an OPA sidecar), with the same
# functions, so the answers are the same either way. It must not read the input.
#
#   default      the view of data.config.defaults (no rule matched, or no rule at all)
#   rules        the view of each rule's settings, in the order of data.config.rules
#   plain_scope  no scoped rule and no exclusion list: scope.in_scope's short body
#   plain_approval  no scoped rule, and the defaults' approval and applyMode are valid:
#                approval's InvalidConfig rules on the settings cannot fire
#
# A view holds only the values that are defined: an absent key is computed per decision
# (and is undefined there too). A value whose computation fails leaves no derived
# document at all, and every value is computed per decision, failing as it always did.
package dakr

import data.dakr.guardrails
import data.dakr.scope

derived := {
	"default": derived_view(data.config.defaults),
	"rules": [derived_view(scope.rule_settings(r)) | some r in data.config.rules],
	"plain_scope": plain_scope,
	"plain_approval": plain_approval,
}

# No scoped rule and no exclusion list (as shipped): scope.in_scope's short body.
plain_scope := true if {
	data.config.rules == []
	data.config.scope.excludeNamespaces == []
	data.config.scope.excludeNamespaceRegex == []
	data.config.scope.excludeNamePatterns == []
} else := false

derived_view(s) := {k: v |
	some k in ["guardrails", "per_resource"]
	v := derive(s, k)
}

derive(s, "guardrails") := scope.guardrails_of(s)

derive(s, "per_resource") := guardrails.resource_bounds(scope.guardrails_of(s))

# No scoped rule (the settings are the defaults), an approval of the three and an
# applyMode, where set, of the two: approval/approval.rego's InvalidConfig rules on the
# settings cannot fire.
plain_approval := true if {
	data.config.rules == []
	data.config.defaults.approval in {"auto", "audit", "review"}
	object.get(data.config.defaults, "applyMode", "gitops") in {"direct", "gitops"}
} else := false

