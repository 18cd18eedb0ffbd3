"""``copur bench churn``: the faults a serving cluster lives through while parties change, under a
steady client load on a local cluster: a party frozen (SIGSTOP), a party slower than the deadline,
a party on a foreign bundle, a full rollout of a new bundle and its rollback; each measured by the
client (throughput, p50/p99, errors, recovery) and checked (ejection, zero errors, no answer
mixing bundles). ``phases`` runs them, ``report`` writes the table."""
