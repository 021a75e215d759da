//! One simulated device's connection: connect (from its own loopback source address), log in
//! the way its protocol does, then send reports and wait for each one's acknowledgement.
//!
//! | protocol | log-in | a report | its acknowledgement |
//! | --- | --- | --- | --- |
//! | gt06 | login 0x01, answered | position 0x12 | the 0x12 answer with the report's serial |
//! | jt808 | registration 0x0100 (the 0x8100 answer carries the code), authentication 0x0102 | 0x0200, or a blind-area batch 0x0704 | 0x8001 for the report's serial and message id, result 0 |
//! | h02 | none: the first sentence identifies | `V1` sentence | `V4,V1` |
//! | watch | `LK` keep-alive | `UD` and an `LK` | the `LK` answer (`UD` has none; see `wire.rs`) |
//! | osmand | none | `GET /?id=..` on a kept-alive connection | `200` |
//! | mqtt | CONNECT, CONNACK | QoS 1 publish on the device's positions topic | the PUBACK of its packet id |
//!
//! Anything else the service writes (a downlink command, a time answer) is read past. A refusal
//! (a JT/T 808 result other than 0, an HTTP error status, a refused CONNACK) is an error of
//! kind `refused`; the caller drops the connection after any error and connects anew.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{Codec as MqttCodec, ConnectReturnCode, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::Framed;

use super::track::TrackPoint;
use super::wire::{self, Reply, ReplyCodec, ReplyError, JT808_EDITION};
use super::LoadProtocol;
use ewall_protocol::{gt06, jt808};

/// Largest MQTT packet read or written.
const MAX_MQTT_PACKET: usize = 64 * 1024;
/// MQTT keep-alive the devices announce; the broker drops a client silent for 1.5 times this.
const MQTT_KEEP_ALIVE_SECS: u16 = 60;

/// Kinds of error, the keys of the summary's `errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The connection could not be made.
    Connect,
    /// The service closed the connection.
    Closed,
    /// No acknowledgement within the ack timeout.
    AckTimeout,
    /// The service answered with a refusal.
    Refused,
    /// The service wrote something that is no reply.
    BadReply,
    /// Reading or writing failed.
    Io,
    /// Registering through the API failed.
    Register,
}

impl ErrorKind {
    /// The summary's key.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Closed => "closed",
            ErrorKind::AckTimeout => "ack_timeout",
            ErrorKind::Refused => "refused",
            ErrorKind::BadReply => "bad_reply",
            ErrorKind::Io => "io",
            ErrorKind::Register => "register",
        }
    }
}

/// An error of one device's connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", kind.as_str())]
pub struct LinkError {
    /// What kind.
    pub kind: ErrorKind,
    /// What happened, for the log.
    pub detail: String,
}

impl LinkError {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        LinkError {
            kind,
            detail: detail.into(),
        }
    }
}

impl From<ReplyError> for LinkError {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::Io(e) => LinkError::new(ErrorKind::Io, e.to_string()),
            ReplyError::Malformed(text) => LinkError::new(ErrorKind::BadReply, text),
        }
    }
}

impl From<std::io::Error> for LinkError {
    fn from(e: std::io::Error) -> Self {
        LinkError::new(ErrorKind::Io, e.to_string())
    }
}

fn closed() -> LinkError {
    LinkError::new(ErrorKind::Closed, "the service closed the connection")
}

/// The source address of device `index` when the target is on loopback: one of 127.0.0.0/8
/// (never the network or broadcast address), so that each source address has its own range of
/// ephemeral ports and 20,000 devices do not exhaust one address's.
pub fn source_address(target: SocketAddr, index: u64) -> Option<SocketAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let host = 1 + (index % ((1 << 24) - 2)) as u32;
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from((127u32 << 24) | host)),
                0,
            ))
        }
        _ => None,
    }
}

/// Connects to `target`, from `source` when given.
pub async fn connect(
    target: SocketAddr,
    source: Option<SocketAddr>,
) -> Result<TcpStream, LinkError> {
    let fail = |e: std::io::Error| LinkError::new(ErrorKind::Connect, format!("{target}: {e}"));
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(fail)?;
    if let Some(source) = source {
        socket.bind(source).map_err(fail)?;
    }
    let stream = socket.connect(target).await.map_err(fail)?;
    stream.set_nodelay(true).map_err(fail)?;
    Ok(stream)
}

/// A logged-in connection of one device.
pub enum Link {
    /// A TCP protocol (OsmAnd's HTTP included).
    Stream {
        /// Which protocol.
        protocol: LoadProtocol,
        /// The connection.
        framed: Framed<TcpStream, ReplyCodec>,
        /// The device's id.
        id: String,
        /// The next frame serial (GT06, JT/T 808).
        serial: u16,
        /// `host:port` for the HTTP `host` header.
        host: String,
    },
    /// An MQTT client.
    Mqtt {
        /// The connection.
        framed: Framed<TcpStream, MqttCodec>,
        /// The device's positions topic.
        topic: String,
        /// The next packet id (1..=65535).
        next_pkid: u16,
    },
}

impl Link {
    /// Connects and logs in.
    ///
    /// # Errors
    /// [`LinkError`] of kind `connect` when the connection fails, and of the reply's kind when
    /// the log-in is refused or unanswered (the caller bounds the wait).
    pub async fn open(
        protocol: LoadProtocol,
        id: &str,
        target: SocketAddr,
        source: Option<SocketAddr>,
        topic_prefix: &str,
    ) -> Result<Link, LinkError> {
        let stream = connect(target, source).await?;
        if protocol == LoadProtocol::Mqtt {
            let mut framed = Framed::new(
                stream,
                MqttCodec {
                    max_incoming_size: MAX_MQTT_PACKET,
                    max_outgoing_size: MAX_MQTT_PACKET,
                },
            );
            let mut connect = rumqttc::mqttbytes::v4::Connect::new(format!("ewall-simulate-{id}"));
            connect.keep_alive = MQTT_KEEP_ALIVE_SECS;
            connect.clean_session = true;
            framed
                .send(Packet::Connect(connect))
                .await
                .map_err(|e| LinkError::new(ErrorKind::Io, e.to_string()))?;
            loop {
                match framed.next().await {
                    None => return Err(closed()),
                    Some(Err(e)) => return Err(LinkError::new(ErrorKind::BadReply, e.to_string())),
                    Some(Ok(Packet::ConnAck(ack))) => {
                        if ack.code != ConnectReturnCode::Success {
                            return Err(LinkError::new(
                                ErrorKind::Refused,
                                format!("CONNACK {:?}", ack.code),
                            ));
                        }
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
            return Ok(Link::Mqtt {
                framed,
                topic: format!("{topic_prefix}/devices/{id}/positions"),
                next_pkid: 1,
            });
        }
        let mut link = Link::Stream {
            protocol,
            framed: Framed::new(stream, ReplyCodec::new(protocol)),
            id: id.to_owned(),
            serial: 1,
            host: target.to_string(),
        };
        link.log_in().await?;
        Ok(link)
    }

    async fn log_in(&mut self) -> Result<(), LinkError> {
        let Link::Stream {
            protocol,
            framed,
            id,
            serial,
            ..
        } = self
        else {
            return Ok(());
        };
        match protocol {
            LoadProtocol::Gt06 => {
                let s = next_serial(serial);
                framed.send(gt06::encode::login(id, s, None)).await?;
                await_reply(framed, |r| gt06_ack(r, 0x01, s)).await
            }
            LoadProtocol::Jt808 => {
                let s = next_serial(serial);
                framed
                    .send(jt808::encode::registration(
                        id,
                        JT808_EDITION,
                        s,
                        "EWALL",
                        "SIMULATE",
                        "SIM0001",
                        "",
                    ))
                    .await?;
                let code = await_reply(framed, |r| match r {
                    Reply::Jt808 {
                        msg_id: 0x8100,
                        body,
                    } if body.len() >= 3 && body[..2] == s.to_be_bytes() => Some(if body[2] == 0 {
                        Ok(String::from_utf8_lossy(&body[3..]).into_owned())
                    } else {
                        Err(LinkError::new(
                            ErrorKind::Refused,
                            format!("registration result {}", body[2]),
                        ))
                    }),
                    _ => None,
                })
                .await?;
                let s = next_serial(serial);
                framed
                    .send(jt808::encode::authentication(id, JT808_EDITION, s, &code))
                    .await?;
                await_reply(framed, |r| jt808_ack(r, s, jt808::msg::AUTHENTICATION)).await
            }
            LoadProtocol::Watch => {
                framed.send(wire::watch_keep_alive(id)).await?;
                await_reply(framed, watch_lk).await
            }
            LoadProtocol::H02 | LoadProtocol::Osmand | LoadProtocol::Mqtt => Ok(()),
        }
    }

    /// Sends `points` (one, or for JT/T 808 a blind-area batch) and waits for the
    /// acknowledgement.
    ///
    /// # Errors
    /// [`LinkError`] when the connection fails or the service refuses the report.
    pub async fn report(&mut self, points: &[TrackPoint]) -> Result<(), LinkError> {
        match self {
            Link::Mqtt {
                framed,
                topic,
                next_pkid,
            } => {
                let pkid = *next_pkid;
                *next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                let mut publish = Publish::new(
                    topic.as_str(),
                    QoS::AtLeastOnce,
                    wire::mqtt_payload(&points[0]),
                );
                publish.pkid = pkid;
                framed
                    .send(Packet::Publish(publish))
                    .await
                    .map_err(|e| LinkError::new(ErrorKind::Io, e.to_string()))?;
                loop {
                    match framed.next().await {
                        None => return Err(closed()),
                        Some(Err(e)) => {
                            return Err(LinkError::new(ErrorKind::BadReply, e.to_string()))
                        }
                        Some(Ok(Packet::PubAck(ack))) if ack.pkid == pkid => return Ok(()),
                        Some(Ok(_)) => {}
                    }
                }
            }
            Link::Stream {
                protocol,
                framed,
                id,
                serial,
                host,
            } => match protocol {
                LoadProtocol::Gt06 => {
                    let s = next_serial(serial);
                    framed.send(wire::gt06_location(s, &points[0])).await?;
                    await_reply(framed, |r| gt06_ack(r, 0x12, s)).await
                }
                LoadProtocol::Jt808 => {
                    let s = next_serial(serial);
                    let (msg_id, frame) = wire::jt808_report(id, s, points);
                    framed.send(frame).await?;
                    await_reply(framed, |r| jt808_ack(r, s, msg_id)).await
                }
                LoadProtocol::H02 => {
                    framed.send(wire::h02_location(id, &points[0])).await?;
                    let expected = format!("*HQ,{id},V4,V1,");
                    await_reply(framed, |r| match r {
                        Reply::Text(text) if text.starts_with(&expected) => Some(Ok(())),
                        _ => None,
                    })
                    .await
                }
                LoadProtocol::Watch => {
                    framed.send(wire::watch_location(id, &points[0])).await?;
                    await_reply(framed, watch_lk).await
                }
                LoadProtocol::Osmand => {
                    framed
                        .send(wire::osmand_request(id, host, &points[0]))
                        .await?;
                    await_reply(framed, |r| match r {
                        Reply::Http(200) => Some(Ok(())),
                        Reply::Http(status) => Some(Err(LinkError::new(
                            ErrorKind::Refused,
                            format!("HTTP {status}"),
                        ))),
                        _ => None,
                    })
                    .await
                }
                LoadProtocol::Mqtt => Ok(()),
            },
        }
    }

    /// Closes the connection politely where the protocol has a way (MQTT DISCONNECT), within
    /// `wait`.
    pub async fn close(self, wait: Duration) {
        if let Link::Mqtt { mut framed, .. } = self {
            let _ = tokio::time::timeout(wait, framed.send(Packet::Disconnect)).await;
        }
    }
}

fn next_serial(serial: &mut u16) -> u16 {
    let s = *serial;
    *serial = serial.wrapping_add(1);
    s
}

fn gt06_ack(reply: &Reply, protocol: u8, serial: u16) -> Option<Result<(), LinkError>> {
    matches!(reply, Reply::Gt06 { protocol: p, serial: s } if *p == protocol && *s == serial)
        .then_some(Ok(()))
}

fn jt808_ack(reply: &Reply, serial: u16, msg_id: u16) -> Option<Result<(), LinkError>> {
    match reply {
        Reply::Jt808 {
            msg_id: 0x8001,
            body,
        } if body.len() >= 5
            && body[..2] == serial.to_be_bytes()
            && body[2..4] == msg_id.to_be_bytes() =>
        {
            Some(if body[4] == 0 {
                Ok(())
            } else {
                Err(LinkError::new(
                    ErrorKind::Refused,
                    format!("result {} for message {msg_id:#06x}", body[4]),
                ))
            })
        }
        _ => None,
    }
}

fn watch_lk(reply: &Reply) -> Option<Result<(), LinkError>> {
    matches!(reply, Reply::Text(text) if text.ends_with("*LK]")).then_some(Ok(()))
}

/// Reads replies until `accept` says one is the awaited answer (or a refusal); others are
/// read past.
async fn await_reply<T>(
    framed: &mut Framed<TcpStream, ReplyCodec>,
    mut accept: impl FnMut(&Reply) -> Option<Result<T, LinkError>>,
) -> Result<T, LinkError> {
    loop {
        match framed.next().await {
            None => return Err(closed()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(reply)) => {
                if let Some(outcome) = accept(&reply) {
                    return outcome;
                }
            }
        }
    }
}
