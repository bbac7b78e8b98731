// fd-probe: the one tiny static program the e2e cluster's own images carry (there is no
// registry to pull a busybox from). Standard library only.
module firedrill.dev/e2e/cluster/probe

go 1.25.0
