//! End-to-end tests of firedrill on a real cluster. There is no library here: the tests
//! are under `tests/` (harness in `tests/common`, on firedrill-testkit), run with
//! `cargo test -p firedrill-e2e` against the cluster in `KUBECONFIG`, on which
//! `e2e/deploy.sh up` has installed charts/firedrill and charts/talk. Each test prints
//! `SKIPPED <name>: <reason>` and passes when no cluster answers or firedrill is not
//! deployed on it.
