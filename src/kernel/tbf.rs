//! The tbf qdisc's TCA_OPTIONS payload (linux/pkt_sched.h), which rtnetlink does not model:
//! `struct tc_tbf_qopt` in TCA_TBF_PARMS, the rate in TCA_TBF_RATE64 when it needs 64 bits,
//! and the bucket in bytes in TCA_TBF_BURST (so no rate table is needed: the link layer is
//! given as Ethernet).

use super::netem::attr;

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// Bytes that may wait in the queue: 100 full frames, as `tc … limit` is often set.
const QUEUE_BYTES: u32 = 100 * 1514;

/// The bucket: two full frames (or 1 ms of traffic at high rates, which one timer tick
/// needs to keep up), so the rate holds from the first few packets on: a larger bucket
/// lets bursts through at the line's speed.
pub fn burst_bytes(rate_bps: u64) -> u32 {
    ((rate_bps / 8 / 1000) as u32).max(1514 * 2)
}

/// Encodes the options of `tc qdisc add … tbf rate R burst B limit L`.
pub fn encode_options(rate_bps: u64) -> Vec<u8> {
    let bytes_per_sec = rate_bps / 8;
    let mut parms = Vec::with_capacity(36);
    // tc_ratespec rate: cell_log, linklayer, overhead, cell_align, mpu, rate.
    parms.extend_from_slice(&[0, TC_LINKLAYER_ETHERNET]);
    parms.extend_from_slice(&[0; 6]);
    parms.extend_from_slice(&(bytes_per_sec.min(u32::MAX as u64) as u32).to_ne_bytes());
    // tc_ratespec peakrate: none.
    parms.extend_from_slice(&[0; 12]);
    // limit, buffer (ticks; TCA_TBF_BURST below replaces it), mtu.
    for field in [QUEUE_BYTES, 0, 0] {
        parms.extend_from_slice(&field.to_ne_bytes());
    }
    let mut out = Vec::with_capacity(64);
    attr(&mut out, TCA_TBF_PARMS, &parms);
    if bytes_per_sec > u32::MAX as u64 {
        attr(&mut out, TCA_TBF_RATE64, &bytes_per_sec.to_ne_bytes());
    }
    attr(
        &mut out,
        TCA_TBF_BURST,
        &burst_bytes(rate_bps).to_ne_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rate_limit_and_burst() {
        let bytes = encode_options(2_000_000);
        // TCA_TBF_PARMS: 4-byte header + 36, then TCA_TBF_BURST: 4 + 4.
        assert_eq!(bytes.len(), 40 + 8);
        assert_eq!(u16::from_ne_bytes([bytes[2], bytes[3]]), TCA_TBF_PARMS);
        assert_eq!(bytes[5], TC_LINKLAYER_ETHERNET);
        assert_eq!(
            u32::from_ne_bytes(bytes[12..16].try_into().unwrap()),
            250_000
        );
        assert_eq!(
            u32::from_ne_bytes(bytes[28..32].try_into().unwrap()),
            QUEUE_BYTES
        );
        assert_eq!(u16::from_ne_bytes([bytes[42], bytes[43]]), TCA_TBF_BURST);
        assert_eq!(u32::from_ne_bytes(bytes[44..48].try_into().unwrap()), 3028);
    }

    #[test]
    fn a_rate_beyond_32_bits_goes_in_its_own_attribute() {
        let bytes = encode_options(80_000_000_000);
        assert_eq!(u16::from_ne_bytes([bytes[42], bytes[43]]), TCA_TBF_RATE64);
    }
}
