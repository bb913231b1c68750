//! The Publisher's on-disk store: an append-only log of accepted QoS 1 messages and of
//! their completions, so that messages accepted before a crash are sent after a restart.
//!
//! Each record is `len: u32 | crc32: u32 | body`. A torn or corrupt tail (the process died
//! mid-write) is cut off on open. Writes go straight to the file (no user-space buffer): a
//! record survives the death of the process as soon as `append` returns; `fsync` is
//! optional, for surviving power loss. The log is compacted when completions dominate it.
//!
//! A message's expiry, when it has one, is kept as wall-clock milliseconds since the Unix
//! epoch after the packet (older records end at the packet and have none), so that a limit
//! the user set still applies after a restart.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use connector_core::{OutboundPacket, QoS, WireProperties};

const ADD: u8 = 1;
const DONE: u8 = 2;
const LOG: &str = "outbox.log";

/// The store.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    file: File,
    fsync: bool,
    live: usize,
    dead: usize,
    scratch: Vec<u8>,
}

impl Store {
    /// Opens (or creates) the store in `dir` and returns the messages it holds that were
    /// never completed, in acceptance order.
    pub fn open(dir: &Path, fsync: bool) -> io::Result<(Store, Vec<(u64, Stored)>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG);
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        // Telemetry can be sensitive: the store is readable by its owner only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&path)?;
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut data)?;
        let (pending, good_len, dead) = replay(&data);
        if good_len < data.len() {
            tracing::warn!(path = %path.display(), cut = data.len() - good_len, "store: cutting a torn tail");
            file.set_len(good_len as u64)?;
        }
        let live = pending.len();
        let store = Store { dir: dir.to_owned(), file, fsync, live, dead, scratch: Vec::with_capacity(256) };
        Ok((store, pending.into_iter().collect()))
    }

    /// Records an accepted message, with its expiry (milliseconds since the Unix epoch).
    pub fn append(&mut self, seq: u64, p: &OutboundPacket, expires_ms: Option<u64>) -> io::Result<()> {
        self.scratch.clear();
        encode_add(&mut self.scratch, seq, p, expires_ms);
        self.write_record()?;
        self.live += 1;
        Ok(())
    }

    /// Records a completion (acknowledged, dropped or failed: it will not be sent again).
    pub fn complete(&mut self, seq: u64) -> io::Result<()> {
        self.scratch.clear();
        self.scratch.push(DONE);
        self.scratch.extend_from_slice(&seq.to_le_bytes());
        self.write_record()?;
        self.live = self.live.saturating_sub(1);
        self.dead += 2;
        Ok(())
    }

    /// Whether the log is worth compacting.
    pub fn wants_compaction(&self) -> bool {
        self.dead > 4096 && self.dead > self.live * 4
    }

    /// Rewrites the log with only `live` messages, atomically (write, fsync, rename).
    pub fn compact<'a>(
        &mut self,
        live: impl Iterator<Item = (u64, &'a OutboundPacket, Option<u64>)>,
    ) -> io::Result<()> {
        let tmp = self.dir.join("outbox.log.tmp");
        let mut out = Vec::new();
        let mut n = 0;
        for (seq, p, expires_ms) in live {
            let mut body = Vec::new();
            encode_add(&mut body, seq, p, expires_ms);
            frame(&mut out, &body);
            n += 1;
        }
        let mut o = OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(LOG))?;
        self.file = OpenOptions::new().append(true).open(self.dir.join(LOG))?;
        self.live = n;
        self.dead = 0;
        Ok(())
    }

    fn write_record(&mut self) -> io::Result<()> {
        let mut rec = Vec::with_capacity(self.scratch.len() + 8);
        frame(&mut rec, &self.scratch);
        self.file.write_all(&rec)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

fn frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

/// A message read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub packet: OutboundPacket,
    /// Its expiry, in milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
}

fn encode_add(out: &mut Vec<u8>, seq: u64, p: &OutboundPacket, expires_ms: Option<u64>) {
    out.push(ADD);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(p.qos.as_u8());
    out.push(u8::from(p.retain));
    put_bytes(out, p.topic.as_bytes());
    put_bytes(out, &p.payload);
    let w = &p.properties;
    put_opt(out, w.content_type.as_deref().map(str::as_bytes));
    put_opt(out, w.correlation_data.as_deref());
    put_opt(out, w.response_topic.as_deref().map(str::as_bytes));
    match w.message_expiry_secs {
        None => out.push(0),
        Some(e) => {
            out.push(1);
            out.extend_from_slice(&e.to_le_bytes());
        }
    }
    out.extend_from_slice(&(w.user.len() as u32).to_le_bytes());
    for (k, v) in &w.user {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v.as_bytes());
    }
    if let Some(ms) = expires_ms {
        out.push(1);
        out.extend_from_slice(&ms.to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    fn opt_string(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.string().map(Some),
            _ => None,
        }
    }
}

fn decode_add(body: &[u8]) -> Option<(u64, Stored)> {
    let mut r = Reader(body);
    if r.u8()? != ADD {
        return None;
    }
    let seq = r.u64()?;
    let qos = QoS::from_u8(r.u8()?)?;
    let retain = r.u8()? != 0;
    let topic = r.string()?;
    let payload = Bytes::copy_from_slice(r.bytes()?);
    let content_type = r.opt_string()?;
    let correlation_data = match r.u8()? {
        0 => None,
        1 => Some(Bytes::copy_from_slice(r.bytes()?)),
        _ => return None,
    };
    let response_topic = r.opt_string()?;
    let message_expiry_secs = match r.u8()? {
        0 => None,
        1 => Some(r.u32()?),
        _ => return None,
    };
    let n = r.u32()? as usize;
    let mut user = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        user.push((r.string()?, r.string()?));
    }
    let properties =
        WireProperties { content_type, correlation_data, response_topic, message_expiry_secs, user };
    // Records written before expiries were stored end here.
    let expires_ms = match r.u8() {
        None => None,
        Some(1) => Some(r.u64()?),
        Some(_) => return None,
    };
    let packet = OutboundPacket { topic, payload, qos, retain, properties };
    Some((seq, Stored { packet, expires_ms }))
}

/// Replays a log: the pending messages, the length of the well-formed prefix, and the
/// number of records that no longer matter.
fn replay(data: &[u8]) -> (BTreeMap<u64, Stored>, usize, usize) {
    let mut pending = BTreeMap::new();
    let mut pos = 0;
    let mut dead = 0;
    while data.len() - pos >= 8 {
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let Some(body) = data.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        match body.first() {
            Some(&ADD) => match decode_add(body) {
                Some((seq, p)) => {
                    pending.insert(seq, p);
                }
                None => break,
            },
            Some(&DONE) if body.len() == 9 => {
                let seq = u64::from_le_bytes(body[1..9].try_into().unwrap_or([0; 8]));
                if pending.remove(&seq).is_some() {
                    dead += 2;
                }
            }
            _ => break,
        }
        pos += 8 + len;
    }
    (pending, pos, dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(i: u64) -> OutboundPacket {
        OutboundPacket {
            topic: format!("t/{i}"),
            payload: Bytes::from(format!("payload-{i}")),
            qos: QoS::AtLeastOnce,
            retain: i % 2 == 0,
            properties: WireProperties {
                content_type: Some("application/json".into()),
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                response_topic: None,
                message_expiry_secs: Some(30),
                user: vec![("k".into(), format!("v{i}"))],
            },
        }
    }

    #[test]
    fn pending_messages_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, pending) = Store::open(dir.path(), false).unwrap();
            assert!(pending.is_empty());
            for i in 1..=5 {
                s.append(i, &packet(i), None).unwrap();
            }
            s.complete(2).unwrap();
            s.complete(4).unwrap();
        }
        let (_, pending) = Store::open(dir.path(), false).unwrap();
        let seqs: Vec<u64> = pending.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [1, 3, 5]);
        assert_eq!(pending[1].1.packet, packet(3));
    }

    #[test]
    fn expiries_survive_reopen_and_compaction_and_old_records_have_none() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), false).unwrap();
            s.append(1, &packet(1), Some(1_700_000_000_123)).unwrap();
            s.append(2, &packet(2), None).unwrap();
        }
        // A record as the store wrote it before expiries existed: the packet and nothing after.
        let mut old = Vec::new();
        encode_add(&mut old, 3, &packet(3), None);
        let mut framed = Vec::new();
        frame(&mut framed, &old);
        OpenOptions::new().append(true).open(dir.path().join(LOG)).unwrap().write_all(&framed).unwrap();
        let (mut s, pending) = Store::open(dir.path(), false).unwrap();
        let got: Vec<(u64, Option<u64>)> = pending.iter().map(|(q, st)| (*q, st.expires_ms)).collect();
        assert_eq!(got, [(1, Some(1_700_000_000_123)), (2, None), (3, None)]);
        s.compact(pending.iter().map(|(q, st)| (*q, &st.packet, st.expires_ms))).unwrap();
        drop(s);
        let (_, again) = Store::open(dir.path(), false).unwrap();
        assert_eq!(again, pending);
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), false).unwrap();
            s.append(1, &packet(1), None).unwrap();
            s.append(2, &packet(2), None).unwrap();
        }
        let path = dir.path().join(LOG);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let (mut s, pending) = Store::open(dir.path(), false).unwrap();
        assert_eq!(pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1]);
        s.append(3, &packet(3), None).unwrap();
        drop(s);
        let (_, pending) = Store::open(dir.path(), false).unwrap();
        assert_eq!(pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn corruption_stops_replay_at_the_bad_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), false).unwrap();
            for i in 1..=3 {
                s.append(i, &packet(i), None).unwrap();
            }
        }
        let path = dir.path().join(LOG);
        let mut data = std::fs::read(&path).unwrap();
        let second = 8 + u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
        data[second + 12] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let (_, pending) = Store::open(dir.path(), false).unwrap();
        assert_eq!(pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn compaction_keeps_only_live_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), true).unwrap();
        let packets: Vec<_> = (0..6000).map(packet).collect();
        for (i, p) in packets.iter().enumerate() {
            s.append(i as u64, p, None).unwrap();
            if i != 5999 {
                s.complete(i as u64).unwrap();
            }
        }
        assert!(s.wants_compaction());
        let before = std::fs::metadata(dir.path().join(LOG)).unwrap().len();
        s.compact(std::iter::once((5999, &packets[5999], None))).unwrap();
        s.append(6000, &packet(6000), None).unwrap();
        let after = std::fs::metadata(dir.path().join(LOG)).unwrap().len();
        assert!(after < before / 100, "{after} vs {before}");
        drop(s);
        let (_, pending) = Store::open(dir.path(), false).unwrap();
        assert_eq!(pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [5999, 6000]);
    }

    #[test]
    fn garbage_files_open_as_empty_without_panicking() {
        for junk in [&b""[..], b"\x01", b"\xff\xff\xff\xff\x00\x00\x00\x00", b"\x05\x00\x00\x00abcdefghijk"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(LOG), junk).unwrap();
            let (_, pending) = Store::open(dir.path(), false).unwrap();
            assert!(pending.is_empty());
        }
    }
}
