//! 3GPP Milenage (TS 35.206): the authentication functions f1, f1*, f2, f3, f4, f5, f5*
//! over AES-128, and the AKA helpers the HLR and the terminal share: building an
//! authentication vector, checking AUTN on the terminal, and AUTS resynchronisation.
//! Checked against the test sets of TS 35.207/35.208 below.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;

pub type Block = [u8; 16];
/// A 48-bit sequence number.
pub type Sqn = [u8; 6];

const C1: Block = [0; 16];
const C2: Block = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const C3: Block = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const C4: Block = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4];
const C5: Block = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8];
const R1: usize = 8;
const R2: usize = 0;
const R3: usize = 4;
const R4: usize = 8;
const R5: usize = 12;

fn xor(a: &Block, b: &Block) -> Block {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Cyclic rotation left by `r` bytes (the spec's r is in bits, always a multiple of 8).
fn rotate(x: &Block, r: usize) -> Block {
    std::array::from_fn(|i| x[(i + r) % 16])
}

/// Milenage bound to one subscriber's K and OPc.
pub struct Milenage {
    cipher: Aes128,
    opc: Block,
}

/// The outputs of f2..f5 for one RAND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub res: [u8; 8],
    pub ck: Block,
    pub ik: Block,
    pub ak: [u8; 6],
}

impl Milenage {
    pub fn new(k: &Block, opc: &Block) -> Self {
        Milenage {
            cipher: Aes128::new(k.into()),
            opc: *opc,
        }
    }

    /// OPc = OP ⊕ E_K(OP), for operators that configure OP rather than OPc.
    pub fn opc_from_op(k: &Block, op: &Block) -> Block {
        let mut block = (*op).into();
        Aes128::new(k.into()).encrypt_block(&mut block);
        xor(&block.into(), op)
    }

    fn encrypt(&self, input: &Block) -> Block {
        let mut block = (*input).into();
        self.cipher.encrypt_block(&mut block);
        block.into()
    }

    fn temp(&self, rand: &Block) -> Block {
        self.encrypt(&xor(rand, &self.opc))
    }

    /// OUT1 of f1/f1*: MAC-A is its first half, MAC-S its second.
    fn out1(&self, rand: &Block, sqn: &Sqn, amf: &[u8; 2]) -> Block {
        let temp = self.temp(rand);
        let mut in1 = [0u8; 16];
        in1[..6].copy_from_slice(sqn);
        in1[6..8].copy_from_slice(amf);
        in1[8..14].copy_from_slice(sqn);
        in1[14..].copy_from_slice(amf);
        let inner = xor(&temp, &rotate(&xor(&in1, &self.opc), R1));
        xor(&self.encrypt(&xor(&inner, &C1)), &self.opc)
    }

    fn out(&self, rand: &Block, r: usize, c: &Block) -> Block {
        let temp = self.temp(rand);
        let inner = xor(&rotate(&xor(&temp, &self.opc), r), c);
        xor(&self.encrypt(&inner), &self.opc)
    }

    /// f1: the network authentication code MAC-A.
    pub fn f1(&self, rand: &Block, sqn: &Sqn, amf: &[u8; 2]) -> [u8; 8] {
        self.out1(rand, sqn, amf)[..8].try_into().expect("8 bytes")
    }

    /// f1*: the resynchronisation code MAC-S.
    pub fn f1_star(&self, rand: &Block, sqn: &Sqn, amf: &[u8; 2]) -> [u8; 8] {
        self.out1(rand, sqn, amf)[8..].try_into().expect("8 bytes")
    }

    /// f2 (RES), f3 (CK), f4 (IK), f5 (AK).
    pub fn f2345(&self, rand: &Block) -> Keys {
        let out2 = self.out(rand, R2, &C2);
        Keys {
            res: out2[8..].try_into().expect("8 bytes"),
            ak: out2[..6].try_into().expect("6 bytes"),
            ck: self.out(rand, R3, &C3),
            ik: self.out(rand, R4, &C4),
        }
    }

    /// f5*: the anonymity key used in resynchronisation.
    pub fn f5_star(&self, rand: &Block) -> [u8; 6] {
        self.out(rand, R5, &C5)[..6].try_into().expect("6 bytes")
    }
}

/// An authentication vector: what the HLR hands the VLR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
    pub rand: Block,
    pub autn: Block,
    pub xres: [u8; 8],
    pub ck: Block,
    pub ik: Block,
    /// GSM-compatible values derived by TS 33.102 c2 and c3.
    pub sres: [u8; 4],
    pub kc: [u8; 8],
}

fn xor6(a: &[u8; 6], b: &[u8; 6]) -> [u8; 6] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Builds a vector for `sqn` and `rand` (AUTN = SQN⊕AK ‖ AMF ‖ MAC-A).
pub fn vector(m: &Milenage, rand: &Block, sqn: &Sqn, amf: &[u8; 2]) -> Vector {
    let keys = m.f2345(rand);
    let mac = m.f1(rand, sqn, amf);
    let mut autn = [0u8; 16];
    autn[..6].copy_from_slice(&xor6(sqn, &keys.ak));
    autn[6..8].copy_from_slice(amf);
    autn[8..].copy_from_slice(&mac);
    // TS 33.102 c2 and c3: fold RES into SRES, CK and IK into Kc.
    let sres: [u8; 4] = std::array::from_fn(|i| keys.res[i] ^ keys.res[i + 4]);
    let kc: [u8; 8] =
        std::array::from_fn(|i| keys.ck[i] ^ keys.ck[i + 8] ^ keys.ik[i] ^ keys.ik[i + 8]);
    Vector {
        rand: *rand,
        autn,
        xres: keys.res,
        ck: keys.ck,
        ik: keys.ik,
        sres,
        kc,
    }
}

/// What the terminal concludes from a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// The network is authentic and the sequence number fresh: answer with RES.
    Accept { res: [u8; 8], sqn: Sqn },
    /// MAC-A is wrong: the network does not know our key.
    MacFailure,
    /// The sequence number is not newer than `highest`: ask for resynchronisation.
    SyncFailure { auts: [u8; 14] },
}

/// The terminal's side of AKA: checks AUTN and the freshness of its SQN against the
/// highest sequence number it has accepted.
pub fn check_challenge(m: &Milenage, rand: &Block, autn: &Block, highest: &Sqn) -> Challenge {
    let keys = m.f2345(rand);
    let sqn = xor6(autn[..6].try_into().expect("6"), &keys.ak);
    let amf: [u8; 2] = autn[6..8].try_into().expect("2");
    if m.f1(rand, &sqn, &amf) != autn[8..] {
        return Challenge::MacFailure;
    }
    if sqn_value(&sqn) <= sqn_value(highest) {
        return Challenge::SyncFailure {
            auts: auts(m, rand, highest),
        };
    }
    Challenge::Accept { res: keys.res, sqn }
}

/// AUTS = SQN_MS ⊕ AK* ‖ MAC-S (with AMF 0000, TS 33.102 6.3.3).
pub fn auts(m: &Milenage, rand: &Block, sqn_ms: &Sqn) -> [u8; 14] {
    let mut out = [0u8; 14];
    out[..6].copy_from_slice(&xor6(sqn_ms, &m.f5_star(rand)));
    out[6..].copy_from_slice(&m.f1_star(rand, sqn_ms, &[0, 0]));
    out
}

/// The network's side of resynchronisation: the terminal's SQN_MS, if AUTS is genuine.
pub fn resync(m: &Milenage, rand: &Block, auts: &[u8; 14]) -> Option<Sqn> {
    let sqn_ms = xor6(auts[..6].try_into().expect("6"), &m.f5_star(rand));
    (m.f1_star(rand, &sqn_ms, &[0, 0]) == auts[6..]).then_some(sqn_ms)
}

pub fn sqn_value(sqn: &Sqn) -> u64 {
    sqn.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

pub fn sqn_bytes(value: u64) -> Sqn {
    let b = value.to_be_bytes();
    b[2..].try_into().expect("6 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        data_encoding::HEXLOWER
            .decode(s.as_bytes())
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// TS 35.207 / 35.208 test sets: K, RAND, SQN, AMF, OP, OPc, f1, f1*, f2, f5, f3, f4, f5*.
    const SETS: [[&str; 13]; 3] = [
        [
            "465b5ce8b199b49faa5f0a2ee238a6bc",
            "23553cbe9637a89d218ae64dae47bf35",
            "ff9bb4d0b607",
            "b9b9",
            "cdc202d5123e20f62b6d676ac72cb318",
            "cd63cb71954a9f4e48a5994e37a02baf",
            "4a9ffac354dfafb3",
            "01cfaf9ec4e871e9",
            "a54211d5e3ba50bf",
            "aa689c648370",
            "b40ba9a3c58b2a05bbf0d987b21bf8cb",
            "f769bcd751044604127672711c6d3441",
            "451e8beca43b",
        ],
        [
            "0396eb317b6d1c36f19c1c84cd6ffd16",
            "c00d603103dcee52c4478119494202e8",
            "fd8eef40df7d",
            "af17",
            "ff53bade17df5d4e793073ce9d7579fa",
            "53c15671c60a4b731c55b4a441c0bde2",
            "5df5b31807e258b0",
            "a8c016e51ef4a343",
            "d3a628ed988620f0",
            "c47783995f72",
            "58c433ff7a7082acd424220f2b67c556",
            "21a8c1f929702adb3e738488b9f5c5da",
            "30f1197061c1",
        ],
        [
            "fec86ba6eb707ed08905757b1bb44b8f",
            "9f7c8d021accf4db213ccff0c7f71a6a",
            "9d0277595ffc",
            "725c",
            "dbc59adcb6f9a0ef735477b7fadf8374",
            "1006020f0a478bf6b699f15c062e42b3",
            "9cabc3e99baf7281",
            "95814ba2b3044324",
            "8011c48c0c214ed2",
            "33484dc2136b",
            "5dbdbb2954e8f3cde665b046179a5098",
            "59a92d3b476a0443487055cf88b2307b",
            "deacdd848cc6",
        ],
    ];

    #[test]
    fn matches_the_3gpp_test_sets() {
        for (n, set) in SETS.iter().enumerate() {
            let k: Block = hex(set[0]);
            let rand: Block = hex(set[1]);
            let sqn: Sqn = hex(set[2]);
            let amf: [u8; 2] = hex(set[3]);
            let opc = Milenage::opc_from_op(&k, &hex(set[4]));
            assert_eq!(opc, hex::<16>(set[5]), "set {}: OPc", n + 1);
            let m = Milenage::new(&k, &opc);
            assert_eq!(
                m.f1(&rand, &sqn, &amf),
                hex::<8>(set[6]),
                "set {}: f1",
                n + 1
            );
            assert_eq!(
                m.f1_star(&rand, &sqn, &amf),
                hex::<8>(set[7]),
                "set {}: f1*",
                n + 1
            );
            let keys = m.f2345(&rand);
            assert_eq!(keys.res, hex::<8>(set[8]), "set {}: f2", n + 1);
            assert_eq!(keys.ak, hex::<6>(set[9]), "set {}: f5", n + 1);
            assert_eq!(keys.ck, hex::<16>(set[10]), "set {}: f3", n + 1);
            assert_eq!(keys.ik, hex::<16>(set[11]), "set {}: f4", n + 1);
            assert_eq!(m.f5_star(&rand), hex::<6>(set[12]), "set {}: f5*", n + 1);
        }
    }

    #[test]
    fn test_set_1_autn() {
        let set = SETS[0];
        let m = Milenage::new(&hex(set[0]), &hex(set[5]));
        let v = vector(&m, &hex(set[1]), &hex(set[2]), &hex(set[3]));
        assert_eq!(v.autn, hex::<16>("55f328b43577b9b94a9ffac354dfafb3"));
    }

    #[test]
    fn the_terminal_accepts_fresh_challenges_and_resyncs_stale_ones() {
        let set = SETS[0];
        let m = Milenage::new(&hex(set[0]), &hex(set[5]));
        let rand: Block = hex(set[1]);
        let v = vector(&m, &rand, &sqn_bytes(33), &[0x80, 0]);
        assert_eq!(
            check_challenge(&m, &rand, &v.autn, &sqn_bytes(32)),
            Challenge::Accept {
                res: v.xres,
                sqn: sqn_bytes(33)
            }
        );
        let Challenge::SyncFailure { auts } = check_challenge(&m, &rand, &v.autn, &sqn_bytes(40))
        else {
            panic!("a stale SQN must ask for resync");
        };
        assert_eq!(resync(&m, &rand, &auts), Some(sqn_bytes(40)));
        let other = Milenage::new(&hex(SETS[1][0]), &hex(SETS[1][5]));
        assert_eq!(
            check_challenge(&other, &rand, &v.autn, &sqn_bytes(0)),
            Challenge::MacFailure
        );
        assert_eq!(resync(&other, &rand, &auts), None);
    }
}
