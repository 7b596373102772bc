//! Just enough of a BTF reader to find struct member offsets in the running kernel.
//!
//! rustc emits no CO-RE relocations, so the eBPF programs read kernel structs at
//! offsets the daemon looks up here at load time (see `kernel_config.rs`). aya's own
//! BTF parser keeps its type accessors private, and btf-rs is LGPL; the format is small
//! and stable (Documentation/bpf/btf.rst), so this file reads it directly, bounds-
//! checking every access: malformed input is an error, never a panic.

use std::path::Path;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
const KIND_MAX: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source} (is the kernel built with CONFIG_DEBUG_INFO_BTF=y?)")]
    Read { path: String, source: std::io::Error },
    #[error("not BTF data (bad magic {0:#06x})")]
    BadMagic(u16),
    #[error("BTF data is truncated or malformed at byte {0}")]
    Malformed(usize),
    #[error("BTF type #{id} has unknown kind {kind}")]
    UnknownKind { id: usize, kind: u32 },
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(String),
    #[error("the kernel's BTF has no member {member} in struct {strukt}")]
    NoMember { strukt: String, member: String },
    #[error("struct {strukt} member {member} is a bitfield")]
    Bitfield { strukt: String, member: String },
    #[error("unsupported kernel: {0}")]
    Layout(String),
}

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset (bitfield members are rejected by `member_offset`).
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug)]
struct Type {
    name_off: u32,
    kind: u32,
    /// `type` for modifiers and typedefs, `size` for structs.
    size_or_type: u32,
    members: Vec<Member>,
}

/// Parsed type section and string table of one BTF blob.
#[derive(Debug)]
pub struct Btf {
    /// Index is the type id; id 0 is `void`.
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, BtfError> {
    let bytes = data.get(at..at + 2).ok_or(BtfError::Malformed(at))?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    let bytes = data.get(at..at + 4).ok_or(BtfError::Malformed(at))?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        Btf::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Btf::parse(&data)
    }

    /// Parses little-endian BTF (every architecture this project supports).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let magic = u16_at(data, 0)?;
        if magic != MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let header_len = u32_at(data, 4)? as usize;
        if header_len < HEADER_LEN {
            return Err(BtfError::Malformed(4));
        }
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let section = |off: usize, len: usize| {
            let start = header_len.checked_add(off).ok_or(BtfError::Malformed(8))?;
            let end = start.checked_add(len).ok_or(BtfError::Malformed(8))?;
            data.get(start..end).ok_or(BtfError::Malformed(start))
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();

        let mut types = vec![Type { name_off: 0, kind: 0, size_or_type: 0, members: Vec::new() }];
        let mut at = 0;
        while at < type_data.len() {
            let name_off = u32_at(type_data, at)?;
            let info = u32_at(type_data, at + 4)?;
            let size_or_type = u32_at(type_data, at + 8)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            if kind == 0 || kind > KIND_MAX {
                return Err(BtfError::UnknownKind { id: types.len(), kind });
            }
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(type_data, m + 8)?;
                        let (bit_offset, bitfield_size) =
                            if kind_flag { (offset & 0xff_ffff, offset >> 24) } else { (offset, 0) };
                        members.push(Member {
                            name_off: u32_at(type_data, m)?,
                            type_id: u32_at(type_data, m + 4)?,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    12 * vlen
                }
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                _ => 0,
            };
            at += extra;
            if at > type_data.len() {
                return Err(BtfError::Malformed(header_len + type_off + at));
            }
            types.push(Type { name_off, kind, size_or_type, members });
        }
        Ok(Btf { types, strings })
    }

    fn name(&self, offset: u32) -> &[u8] {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let ty = self.types.get(id as usize)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type;
                }
                _ => return Some(ty),
            }
        }
        None
    }

    /// Bit offset of `member` in a struct or union, looking through anonymous members.
    fn find_member(&self, ty: &Type, member: &str, depth: u32) -> Option<Member> {
        if depth > 8 || !matches!(ty.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for m in &ty.members {
            let name = self.name(m.name_off);
            if name == member.as_bytes() {
                return Some(*m);
            }
            if name.is_empty()
                && let Some(inner) = self.resolve(m.type_id)
                && let Some(found) = self.find_member(inner, member, depth + 1)
            {
                return Some(Member { bit_offset: m.bit_offset + found.bit_offset, ..found });
            }
        }
        None
    }

    /// Byte offset of `member` in `struct strukt` (members of anonymous structs and
    /// unions count as members of the enclosing struct, as in C).
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let mut saw_struct = false;
        for ty in &self.types {
            if ty.kind != KIND_STRUCT || self.name(ty.name_off) != strukt.as_bytes() {
                continue;
            }
            saw_struct = true;
            if let Some(found) = self.find_member(ty, member, 0) {
                if found.bitfield_size != 0 || found.bit_offset % 8 != 0 {
                    return Err(BtfError::Bitfield { strukt: strukt.into(), member: member.into() });
                }
                return Ok(found.bit_offset / 8);
            }
        }
        if saw_struct {
            Err(BtfError::NoMember { strukt: strukt.into(), member: member.into() })
        } else {
            Err(BtfError::NoStruct(strukt.into()))
        }
    }

    /// Whether a struct of this name exists.
    #[cfg(test)]
    pub fn has_struct(&self, strukt: &str) -> bool {
        self.types.iter().any(|ty| ty.kind == KIND_STRUCT && self.name(ty.name_off) == strukt.as_bytes())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BTF blob by hand: the test oracle is the format spec, not this reader.
    #[derive(Default)]
    pub(crate) struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        count: u32,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Builder { strings: vec![0], ..Default::default() }
        }
        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn push(&mut self, name: &str, kind: u32, vlen: u32, kflag: bool, size_or_type: u32) -> u32 {
            let name = self.string(name);
            let info = (kind << 24) | vlen | if kflag { 1 << 31 } else { 0 };
            for v in [name, info, size_or_type] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            self.count += 1;
            self.count
        }
        pub(crate) fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.push(name, KIND_INT, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }
        pub(crate) fn ptr(&mut self, to: u32) -> u32 {
            self.push("", 2, 0, false, to)
        }
        pub(crate) fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
            let id = self.push("", KIND_ARRAY, 0, false, 0);
            for v in [elem, index, nelems] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            id
        }
        pub(crate) fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.push(name, KIND_TYPEDEF, 0, false, to)
        }
        /// `members`: (name, type id, byte offset).
        pub(crate) fn structure(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(KIND_STRUCT, name, size, members)
        }
        pub(crate) fn union(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(KIND_UNION, name, size, members)
        }
        fn composite(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let id = self.push(name, kind, members.len() as u32, false, size);
            for (member, ty, offset) in members {
                let name = self.string(member);
                for v in [name, *ty, offset * 8] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }
        pub(crate) fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for v in [HEADER_LEN as u32, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32]
            {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let u64_ty = b.int("u64", 8);
        let u32_ty = b.int("u32", 4);
        let inner = b.structure("", 16, &[("arg_start", u64_ty, 0), ("arg_end", u64_ty, 8)]);
        let un = b.union("", 8, &[("hash_len", u64_ty, 0), ("alias", u32_ty, 0)]);
        let tdef = b.typedef("inner_t", inner);
        b.structure("mm_struct", 40, &[("pgd", u64_ty, 0), ("", tdef, 8), ("", un, 24), ("last", u32_ty, 32)]);
        let p = b.ptr(u64_ty);
        b.structure("file", 16, &[("f_mode", u32_ty, 4), ("f_inode", p, 8)]);
        b.build()
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("file", "f_mode").unwrap(), 4);
        assert_eq!(btf.member_offset("file", "f_inode").unwrap(), 8);
        assert_eq!(btf.member_offset("mm_struct", "arg_start").unwrap(), 8);
        assert_eq!(btf.member_offset("mm_struct", "arg_end").unwrap(), 16);
        assert_eq!(btf.member_offset("mm_struct", "alias").unwrap(), 24);
        assert_eq!(btf.member_offset("mm_struct", "last").unwrap(), 32);
    }

    #[test]
    fn names_what_is_missing() {
        let btf = Btf::parse(&sample()).unwrap();
        assert!(matches!(btf.member_offset("file", "f_path"), Err(BtfError::NoMember { .. })));
        assert!(matches!(btf.member_offset("dentry", "d_name"), Err(BtfError::NoStruct(_))));
        assert!(btf.has_struct("file"));
        assert!(!btf.has_struct("inner_t"));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert!(matches!(Btf::parse(&[]), Err(BtfError::Malformed(0))));
        assert!(matches!(Btf::parse(&[0, 0, 0, 0]), Err(BtfError::BadMagic(0))));
        let good = sample();
        for len in 0..good.len() {
            assert!(Btf::parse(&good[..len]).is_err(), "truncated to {len} bytes parsed");
        }
        // Every single-byte corruption either parses or errors; none panics.
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0xff;
            if let Ok(btf) = Btf::parse(&bad) {
                let _ = btf.member_offset("mm_struct", "arg_end");
            }
        }
    }

    #[test]
    fn reads_the_running_kernel_when_present() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("skipping: {VMLINUX_BTF} not readable here");
            return;
        };
        // struct path is { struct vfsmount *mnt; struct dentry *dentry; } on every kernel.
        assert_eq!(btf.member_offset("path", "mnt").unwrap(), 0);
        assert_eq!(btf.member_offset("path", "dentry").unwrap(), 8);
        assert!(btf.member_offset("file", "f_path").unwrap() > 0);
    }
}
