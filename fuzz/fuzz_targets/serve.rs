#![no_main]
use libfuzzer_sys::fuzz_target;
use pinion::http::HttpLimits;
use pinion_fuzz::*;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, mut rest)) = input.split_first() else { return };
    let limits = if flags & 1 == 1 {
        let (l, r) = rest.split_at(rest.len().min(6));
        rest = r;
        limits_from(l)
    } else {
        HttpLimits::default()
    };
    let n = ((flags >> 1) & 7) as usize;
    let (s, data) = rest.split_at(rest.len().min(n));
    let sizes: Vec<usize> = s.iter().map(|&b| (b as usize % 64) + 1).collect();

    let whole = serve(data, Vec::new(), &limits);
    let rw = check_output(&whole);
    if !sizes.is_empty() {
        let split = serve(data, sizes, &limits);
        let rs = check_output(&split);
        same(&whole, &rw, &split, &rs, "whole vs chosen split");
    }
    if data.len() <= 2048 {
        let ones = serve(data, vec![1], &limits);
        let ro = check_output(&ones);
        same(&whole, &rw, &ones, &ro, "whole vs one byte at a time");
    }
});
