//! Receiving a datagram together with the time the kernel queued it (`SO_TIMESTAMPNS`), so that a
//! shard that fell behind can tell how long a packet waited in its socket and shed audio too late
//! to be of use (see `driver::forward`, [`SHED_AFTER`]).
//!
//! Safe code on nix's `recvmsg`; the control buffer is allocated once. Linux only: elsewhere (the
//! Studio's embedded room on Windows and macOS) datagrams come without a time and are never shed.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime};

/// Audio that waited longer than this in a shard's socket is dropped instead of forwarded: a
/// listener's jitter buffer would play it far too late, and forwarding a backlog to every
/// listener only deepens it. Loss is concealed (Opus FEC, PLC); a growing delay is not. Half a
/// second, not less: a shard that keeps up on average still sees scheduling spikes of a few
/// hundred milliseconds on a busy machine (the capacity bench measured up to ~400 ms at 2,250
/// listeners with nothing lost), and those are better played late than dropped; 200 ms turned
/// such spikes into several per cent of loss.
pub const SHED_AFTER: Duration = Duration::from_millis(500);

/// Ages above this are taken for a wall-clock step, not for a wait (never shed).
const IMPLAUSIBLE_AGE: Duration = Duration::from_secs(60);

/// A reusable receiver for one socket.
pub struct StampedRecv {
    #[cfg(target_os = "linux")]
    control: Vec<u8>,
}

impl StampedRecv {
    /// Asks the kernel to stamp every datagram `socket` receives. Without stamps (refused, or
    /// not Linux), [`StampedRecv::recv`] still receives, with no age.
    pub fn new(socket: &UdpSocket) -> StampedRecv {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::socket::{setsockopt, sockopt};
            if let Err(e) = setsockopt(socket, sockopt::ReceiveTimestampns, &true) {
                tracing::warn!(%e, "SO_TIMESTAMPNS refused: stale audio will not be shed");
            }
            StampedRecv {
                control: nix::cmsg_space!(nix::sys::time::TimeSpec),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = socket;
            StampedRecv {}
        }
    }

    /// Receives one datagram into `buf`: its length, its source and how long it waited in the
    /// socket (`None` without a stamp or when the clock stepped). Blocks as the socket's read
    /// timeout says.
    #[cfg(target_os = "linux")]
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
        self.recv_with(socket, buf, nix::sys::socket::MsgFlags::empty())
    }

    /// As [`StampedRecv::recv`], but never waits: `WouldBlock` when no datagram is queued.
    #[cfg(target_os = "linux")]
    pub fn try_recv(
        &mut self,
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
        self.recv_with(socket, buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
    }

    #[cfg(target_os = "linux")]
    fn recv_with(
        &mut self,
        socket: &UdpSocket,
        buf: &mut [u8],
        flags: nix::sys::socket::MsgFlags,
    ) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{ControlMessageOwned, SockaddrStorage, recvmsg};

        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut self.control),
            flags,
        )
        .map_err(io::Error::from)?;
        let source = msg
            .address
            .and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::V4((*v4).into()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
            })
            .ok_or_else(|| io::Error::other("datagram without an IP source address"))?;
        let stamp = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(t) => Some(t),
                _ => None,
            })
        });
        let age = stamp.and_then(|t| {
            let at = SystemTime::UNIX_EPOCH
                + Duration::new(
                    t.tv_sec().max(0) as u64,
                    t.tv_nsec().clamp(0, 999_999_999) as u32,
                );
            let age = SystemTime::now()
                .duration_since(at)
                .unwrap_or(Duration::ZERO);
            (age < IMPLAUSIBLE_AGE).then_some(age)
        });
        Ok((msg.bytes, source, age))
    }

    /// Never waits; on this platform it reads nothing (`WouldBlock`): the loop reads one
    /// datagram per turn with [`StampedRecv::recv`].
    #[cfg(not(target_os = "linux"))]
    pub fn try_recv(
        &mut self,
        _socket: &UdpSocket,
        _buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Receives one datagram into `buf` (no arrival time on this platform).
    #[cfg(not(target_os = "linux"))]
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
        let (n, source) = socket.recv_from(buf)?;
        Ok((n, source, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_that_waited_in_the_socket_shows_its_age() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut recv = StampedRecv::new(&receiver);
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = receiver.local_addr().expect("addr");
        // Linux turns arrival stamping on for the whole stack from a work queue when the first
        // socket asks; until then a datagram is stamped when it is read (age ~0: never shed, the
        // safe side). Let that happen before the datagram that waits.
        let mut buf = [0u8; 16];
        for _ in 0..20 {
            sender.send_to(b"warm-up", to).expect("send");
            std::thread::sleep(Duration::from_millis(50));
            let (_, _, age) = recv.recv(&receiver, &mut buf).expect("warm-up");
            if age.is_some_and(|a| a >= Duration::from_millis(45)) || cfg!(not(target_os = "linux"))
            {
                break;
            }
        }
        sender.send_to(b"old", to).expect("send");
        std::thread::sleep(Duration::from_millis(300));
        sender.send_to(b"new", to).expect("send");
        let (n, from, age) = recv.recv(&receiver, &mut buf).expect("first");
        assert_eq!(&buf[..n], b"old");
        assert_eq!(from, sender.local_addr().expect("addr"));
        let (n, _, fresh) = recv.recv(&receiver, &mut buf).expect("second");
        assert_eq!(&buf[..n], b"new");
        if cfg!(target_os = "linux") {
            let age = age.expect("the kernel stamps arrivals");
            assert!(age >= Duration::from_millis(290), "waited ~300 ms: {age:?}");
            assert!(
                fresh.expect("an age") < Duration::from_millis(100),
                "{fresh:?}"
            );
        } else {
            assert_eq!((age, fresh), (None, None));
        }
        // Nothing waiting: the read timeout, as for a plain receive.
        receiver
            .set_read_timeout(Some(Duration::from_millis(10)))
            .expect("timeout");
        let e = recv.recv(&receiver, &mut buf).expect_err("nothing to read");
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }
}
