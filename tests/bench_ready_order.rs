//! The latency bench's client serves ready connections in readiness order (see
//! `benches/http_latency/order.rs`): the order is the poll's, never sorted by index.

#[path = "../benches/http_latency/order.rs"]
mod order;

use order::ready_order;

#[test]
fn ready_connections_are_served_in_the_order_the_poll_reported_them() {
    // Not index order: 9 came first.
    assert_eq!(ready_order([9, 2, 5], Vec::new(), 16), vec![9, 2, 5]);
    // The poll's events first, then the connections still making progress, each once.
    assert_eq!(ready_order([7, 3], vec![3, 1, 7, 0], 16), vec![7, 3, 1, 0]);
    // An event repeated in one poll (readable, then writable) is served once.
    assert_eq!(ready_order([4, 4, 2], vec![2], 16), vec![4, 2]);
    // Tokens past the connections (none in use, but never an index out of bounds).
    assert_eq!(ready_order([20, 1, 16], vec![15], 16), vec![1, 15]);
    assert!(ready_order([], Vec::new(), 0).is_empty());
}
