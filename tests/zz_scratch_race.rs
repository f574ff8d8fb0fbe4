mod support;
use pinion::*;
use std::time::Duration;
#[test]
fn scratch_spawn_vs_stop() {
    for round in 0..2000 {
        let node = support::node(&format!("race{round}"), 2);
        let threads: Vec<_> = (0..3).map(|_| {
            let h = node.handle();
            std::thread::spawn(move || {
                loop {
                    match h.spawn(support::Counter::default, ProcessOptions::default()).wait() {
                        Ok(_) => {}
                        Err(SpawnError::Stopped) => return,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        }).collect();
        std::thread::sleep(Duration::from_micros(200 + (round % 7) * 100));
        support::within("stop", Duration::from_secs(30), move || node.stop());
        for t in threads {
            support::within("spawner", Duration::from_secs(10), move || t.join().unwrap());
        }
    }
}
