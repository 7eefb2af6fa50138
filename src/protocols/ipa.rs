//! IPA framing, as Osmocom's GSUP uses it: a 3-byte header (payload length, big endian,
//! then the stream id), GSUP travelling in the Osmocom extension stream (0xEE) with
//! extension byte 0x05, and the IPA CCM stream (0xFE) carrying the identity exchange
//! that tells the HLR which VLR is speaking.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PROTO_OSMO: u8 = 0xee;
pub const PROTO_CCM: u8 = 0xfe;
pub const EXT_GSUP: u8 = 0x05;

const CCM_PING: u8 = 0x00;
const CCM_PONG: u8 = 0x01;
const CCM_ID_GET: u8 = 0x04;
const CCM_ID_RESP: u8 = 0x05;
const CCM_ID_ACK: u8 = 0x06;
const CCM_ID_NACK: u8 = 0x07;
/// Identity tags (libosmocore's IPAC_IDTAG_*): the serial number osmo-hlr routes by, the
/// unit name, and the unit ID (`site/bts/trx`) libosmocore's IPA server insists on.
pub const TAG_SERIAL: u8 = 0x00;
pub const TAG_UNIT_NAME: u8 = 0x01;
pub const TAG_UNIT_ID: u8 = 0x08;

/// Larger frames are refused: no GSUP message of ours comes near it, and a peer cannot
/// make us hold more.
pub const MAX_FRAME: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Gsup(Vec<u8>),
    Ping,
    Pong,
    IdGet(Vec<u8>),
    IdResp(Vec<(u8, String)>),
    IdAck,
    IdNack,
}

#[derive(Debug, thiserror::Error)]
pub enum IpaError {
    #[error("frame of {0} bytes is larger than the {MAX_FRAME} allowed")]
    Oversized(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("unknown stream 0x{0:02x}")]
    UnknownStream(u8),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The frame's bytes on the wire.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let (proto, body): (u8, Vec<u8>) = match frame {
        Frame::Gsup(payload) => {
            let mut b = Vec::with_capacity(payload.len() + 1);
            b.push(EXT_GSUP);
            b.extend_from_slice(payload);
            (PROTO_OSMO, b)
        }
        Frame::Ping => (PROTO_CCM, vec![CCM_PING]),
        Frame::Pong => (PROTO_CCM, vec![CCM_PONG]),
        Frame::IdAck => (PROTO_CCM, vec![CCM_ID_ACK]),
        Frame::IdNack => (PROTO_CCM, vec![CCM_ID_NACK]),
        Frame::IdGet(tags) => {
            let mut b = vec![CCM_ID_GET];
            for tag in tags {
                b.extend_from_slice(&[0x01, *tag]);
            }
            (PROTO_CCM, b)
        }
        Frame::IdResp(items) => {
            let mut b = vec![CCM_ID_RESP];
            for (tag, value) in items {
                // Length counts the tag and the NUL-terminated value.
                let len = value.len() + 2;
                b.extend_from_slice(&(len as u16).to_be_bytes());
                b.push(*tag);
                b.extend_from_slice(value.as_bytes());
                b.push(0);
            }
            (PROTO_CCM, b)
        }
    };
    let mut out = Vec::with_capacity(body.len() + 3);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.push(proto);
    out.extend_from_slice(&body);
    out
}

/// Decodes a frame's body, given its stream id.
pub fn decode(proto: u8, body: &[u8]) -> Result<Frame, IpaError> {
    match proto {
        PROTO_OSMO => match body.split_first() {
            Some((&EXT_GSUP, payload)) => Ok(Frame::Gsup(payload.to_vec())),
            Some(_) => Err(IpaError::Malformed("not a GSUP extension")),
            None => Err(IpaError::Malformed("empty Osmocom frame")),
        },
        PROTO_CCM => {
            let (&kind, rest) = body
                .split_first()
                .ok_or(IpaError::Malformed("empty CCM frame"))?;
            match kind {
                CCM_PING => Ok(Frame::Ping),
                CCM_PONG => Ok(Frame::Pong),
                CCM_ID_ACK => Ok(Frame::IdAck),
                CCM_ID_NACK => Ok(Frame::IdNack),
                CCM_ID_GET => Ok(Frame::IdGet(
                    rest.chunks(2).filter_map(|c| c.get(1).copied()).collect(),
                )),
                CCM_ID_RESP => {
                    let mut items = Vec::new();
                    let mut at = rest;
                    while !at.is_empty() {
                        if at.len() < 3 {
                            return Err(IpaError::Malformed("truncated identity"));
                        }
                        let len = u16::from_be_bytes([at[0], at[1]]) as usize;
                        if len == 0 || at.len() < 2 + len {
                            return Err(IpaError::Malformed("identity length past the frame"));
                        }
                        let tag = at[2];
                        let value = &at[3..2 + len];
                        let value = value.strip_suffix(&[0]).unwrap_or(value);
                        let text = std::str::from_utf8(value)
                            .map_err(|_| IpaError::Malformed("identity is not text"))?;
                        items.push((tag, text.to_string()));
                        at = &at[2 + len..];
                    }
                    Ok(Frame::IdResp(items))
                }
                _ => Err(IpaError::Malformed("unknown CCM message")),
            }
        }
        other => Err(IpaError::UnknownStream(other)),
    }
}

/// Reads one frame; refuses oversized ones before reading their body.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Frame, IpaError> {
    let mut header = [0u8; 3];
    reader.read_exact(&mut header).await?;
    let len = u16::from_be_bytes([header[0], header[1]]) as usize;
    if len > MAX_FRAME {
        return Err(IpaError::Oversized(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    decode(header[2], &body)
}

pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> Result<(), IpaError> {
    writer.write_all(&encode(frame)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsup_frames_carry_the_osmocom_extension_header() {
        let bytes = encode(&Frame::Gsup(vec![0x08, 0x01]));
        assert_eq!(bytes, [0x00, 0x03, 0xee, 0x05, 0x08, 0x01]);
        assert_eq!(
            decode(bytes[2], &bytes[3..]).unwrap(),
            Frame::Gsup(vec![0x08, 0x01])
        );
    }

    #[test]
    fn identity_responses_round_trip() {
        let frame = Frame::IdResp(vec![(TAG_UNIT_NAME, "visited".into())]);
        let bytes = encode(&frame);
        assert_eq!(
            bytes,
            [
                0x00, 0x0c, 0xfe, 0x05, 0x00, 0x09, 0x01, b'v', b'i', b's', b'i', b't', b'e', b'd',
                0x00
            ]
        );
        assert_eq!(decode(bytes[2], &bytes[3..]).unwrap(), frame);
        assert_eq!(
            encode(&Frame::IdGet(vec![TAG_UNIT_NAME])),
            [0x00, 0x03, 0xfe, 0x04, 0x01, 0x01]
        );
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for body in [
            &[][..],
            &[0x05, 0x00],
            &[0x05, 0x00, 0x09, 0x01],
            &[0x05, 0xff, 0xff, 0x01, 0x02],
            &[0x09],
        ] {
            assert!(decode(PROTO_CCM, body).is_err(), "{body:?}");
        }
        assert!(decode(PROTO_OSMO, &[0x06, 1]).is_err());
        assert!(decode(0x42, &[1]).is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn oversized_frames_are_refused_before_reading_them() {
        let mut input: &[u8] = &[0xff, 0xff, 0xee, 0x05];
        assert!(matches!(
            read_frame(&mut input).await,
            Err(IpaError::Oversized(65535))
        ));
    }
}
