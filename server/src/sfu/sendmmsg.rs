//! `sendmmsg(2)` for the SFU's fan-out: many datagrams to many addresses in one system call.
//!
//! With `prefetch.rs`, the crate's only unsafe code. std and socket2 have no batched send, and
//! nix's wrapper reads uninitialised memory when its result is iterated, so this calls libc
//! directly; the buffers are allocated once and reused, so a batch allocates nothing. Linux only:
//! elsewhere (the Studio's embedded room on Windows and macOS) the same type sends one `send_to`
//! per datagram.
#![cfg_attr(target_os = "linux", allow(unsafe_code))]

use std::io;
use std::net::{SocketAddr, UdpSocket};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

#[cfg(target_os = "linux")]
use socket2::SockAddr;

/// Most datagrams one call takes (Linux's `UIO_MAXIOV`).
pub const MAX_BATCH: usize = 1024;

/// Reusable headers for [`SendBatch::send`].
#[cfg(target_os = "linux")]
pub struct SendBatch {
    addrs: Vec<SockAddr>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

#[cfg(target_os = "linux")]
impl SendBatch {
    /// Room for [`MAX_BATCH`] datagrams.
    pub fn new() -> SendBatch {
        SendBatch {
            addrs: Vec::with_capacity(MAX_BATCH),
            iovs: Vec::with_capacity(MAX_BATCH),
            hdrs: Vec::with_capacity(MAX_BATCH),
        }
    }

    /// Sends the first [`MAX_BATCH`] of `datagrams` in one call. Returns how many the kernel
    /// took, in order (fewer than given when one failed after the first; the next call then
    /// reports that one's error), or the error of the first.
    pub fn send<D: std::ops::Deref<Target = [u8]>>(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[(SocketAddr, D)],
    ) -> io::Result<usize> {
        let datagrams = &datagrams[..datagrams.len().min(MAX_BATCH)];
        if datagrams.is_empty() {
            return Ok(0);
        }
        self.addrs.clear();
        self.iovs.clear();
        self.hdrs.clear();
        for (to, data) in datagrams {
            let data: &[u8] = data;
            self.addrs.push(SockAddr::from(*to));
            self.iovs.push(libc::iovec {
                iov_base: data.as_ptr().cast_mut().cast(),
                iov_len: data.len(),
            });
        }
        // `addrs` and `iovs` are complete: the pointers taken below stay valid until the call.
        for (addr, iov) in self.addrs.iter().zip(self.iovs.iter_mut()) {
            // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths, no flags).
            let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            hdr.msg_hdr.msg_name = addr.as_ptr().cast_mut().cast();
            hdr.msg_hdr.msg_namelen = addr.len();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(hdr);
        }
        // SAFETY: `hdrs` holds `hdrs.len()` initialised headers; each points at one address in
        // `addrs` and one `iovec` in `iovs` (neither vector changes until the next call), and
        // each `iovec` at a datagram borrowed from `datagrams` for this call. The kernel reads
        // those and writes only the headers' `msg_len`.
        let sent = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                0,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }
}

/// Where `sendmmsg` is missing: one `send_to` per datagram, same contract.
#[cfg(not(target_os = "linux"))]
pub struct SendBatch;

#[cfg(not(target_os = "linux"))]
impl SendBatch {
    /// A sender.
    pub fn new() -> SendBatch {
        SendBatch
    }

    /// Sends the first [`MAX_BATCH`] of `datagrams`, in order; returns how many were sent (fewer
    /// when one failed after the first), or the error of the first.
    pub fn send<D: std::ops::Deref<Target = [u8]>>(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[(SocketAddr, D)],
    ) -> io::Result<usize> {
        let datagrams = &datagrams[..datagrams.len().min(MAX_BATCH)];
        for (i, (to, data)) in datagrams.iter().enumerate() {
            if let Err(e) = socket.send_to(data, to) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(datagrams.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reaches_every_address_in_order() {
        let receivers: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut datagrams = Vec::new();
        for (i, r) in receivers.iter().enumerate() {
            let to = r.local_addr().expect("addr");
            datagrams.push((to, vec![i as u8; 10 + i]));
            datagrams.push((to, vec![0xff; 3]));
        }
        let mut batch = SendBatch::new();
        assert_eq!(batch.send(&sender, &datagrams).expect("sent"), 6);
        assert_eq!(batch.send::<Vec<u8>>(&sender, &[]).expect("nothing"), 0);
        for (i, r) in receivers.iter().enumerate() {
            r.set_read_timeout(Some(std::time::Duration::from_secs(1)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            let (n, from) = r.recv_from(&mut buf).expect("first");
            assert_eq!(&buf[..n], &vec![i as u8; 10 + i][..]);
            assert_eq!(from, sender.local_addr().expect("addr"));
            let (n, _) = r.recv_from(&mut buf).expect("second");
            assert_eq!(&buf[..n], &[0xff; 3]);
        }
    }
}
