//! The latency bench's client serves ready connections in readiness order (see
//! `benches/http_latency/order.rs`): the order is the poll's, never sorted by index.

#[path = "../benches/http_latency/order.rs"]
mod order;

use order::ReadyOrder;

#[test]
fn ready_connections_are_served_in_the_order_the_poll_reported_them() {
    let mut order = ReadyOrder::default();
    let mut retry = Vec::new();
    // Not index order: 9 came first.
    assert_eq!(order.round([9, 2, 5], &mut retry, 16), [9, 2, 5]);
    // The poll's events first, then the connections still making progress, each once; the
    // retry list is taken.
    retry.extend([3, 1, 7, 0]);
    assert_eq!(order.round([7, 3], &mut retry, 16), [7, 3, 1, 0]);
    assert!(retry.is_empty());
    // An event repeated in one poll (readable, then writable) is served once; what the round
    // before saw does not hide a connection now.
    retry.push(2);
    assert_eq!(order.round([4, 4, 2], &mut retry, 16), [4, 2]);
    assert_eq!(order.round([2, 9], &mut retry, 16), [2, 9]);
    // Tokens past the connections (none in use, but never an index out of bounds).
    retry.push(15);
    assert_eq!(order.round([20, 1, 16], &mut retry, 16), [1, 15]);
    assert!(order.round([], &mut retry, 0).is_empty());
}
