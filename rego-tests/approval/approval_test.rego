package dakr.approval_test

import data.fixtures as f

test_auto_goes_gitops_by_default if f.mode(f.rightsizing) == "gitops"

test_auto_follows_the_operators_mode if f.mode(f.cluster("operatorMode", "direct")) == "direct"

test_an_operator_without_writer_audits if f.mode(f.cluster("operatorMode", "audit")) == "audit"

test_an_operator_without_writer_still_allows if f.allows(f.cluster("operatorMode", "audit"))

test_bad_operator_mode if f.denies(f.cluster("operatorMode", "kubectl"), "InvalidConfig")

test_no_operator_mode_is_gitops if f.mode(json.remove(f.rightsizing, ["/cluster/operatorMode"])) == "gitops"

test_config_beats_the_operators_mode if f.mode(f.cluster("operatorMode", "direct")) == "gitops" with data.config.defaults.applyMode as "gitops"

test_rule_routes_one_workload if f.mode(f.cluster("operatorMode", "direct")) == "gitops" with data.config.rules as [{"name": "web-by-pr", "match": {"names": ["^cartservice$"]}, "settings": {"applyMode": "gitops"}}]

test_managed_beats_a_direct_operator if f.mode(f.set(f.cluster("operatorMode", "direct"), "/cluster/gitops", {"tool": "argocd"})) == "gitops"

test_auto_with_direct_apply_mode if f.mode(f.rightsizing) == "direct" with data.config.defaults.applyMode as "direct"

test_audit_only if f.mode(f.rightsizing) == "audit" with data.config.defaults.approval as "audit"

test_audit_warns if f.warned(f.rightsizing, "audit-only") with data.config.defaults.approval as "audit"

test_audit_beats_gitops if f.mode(f.labelled("argocd.argoproj.io/instance", "shop")) == "audit" with data.config.defaults.approval as "audit"

test_review_goes_gitops if f.mode(f.rightsizing) == "gitops" with data.config.defaults.approval as "review"

test_review_warns if f.warned(f.rightsizing, "requires review") with data.config.defaults.approval as "review"

test_source_asks_review if f.mode(f.spec("autoApply", false)) == "gitops"

test_source_review_warns if f.warned(f.spec("autoApply", false), "autoApply: false")

test_missing_auto_apply_is_auto if f.mode(json.remove(f.rightsizing, ["/recommendation/spec/autoApply"])) == "direct" with data.config.defaults.applyMode as "direct"

test_managed_goes_gitops if f.mode(f.cluster("gitops", {"tool": "argocd"})) == "gitops"

test_managed_warns if f.warned(f.cluster("gitops", {"tool": "argocd"}), "managed by argocd") with data.config.defaults.applyMode as "direct"

test_payments_rule_reviews if f.mode(f.in_namespace("payments")) == "gitops"

test_bad_approval if f.denies(f.rightsizing, "InvalidConfig") with data.config.defaults.approval as "sometimes"

test_bad_apply_mode if f.denies(f.rightsizing, "InvalidConfig") with data.config.defaults.applyMode as "kubectl"

test_good_config if not f.denies(f.rightsizing, "InvalidConfig")
