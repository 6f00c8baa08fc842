//! A small eBPF assembler: the instructions our XDP program needs, forward jumps to named
//! labels resolved at the end. Encodings from the kernel's `Documentation/bpf/standardization/
//! instruction-set.rst`: `code = op | source | class`, jump offsets counted in instruction
//! slots from the slot after the jump.

use crate::backend::linux::sys::BpfInsn;

// Classes.
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
// Sizes and modes.
const MEM: u8 = 0x60;
const IMM_DW: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
/// Source: immediate (`K`) or register (`X`).
const K: u8 = 0x00;
const X: u8 = 0x08;
// ALU operations.
const ADD: u8 = 0x00;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const MOV: u8 = 0xb0;
const END: u8 = 0xd0;
/// `BPF_TO_BE` in the source bit of an `END` instruction.
const TO_BE: u8 = 0x08;
// Jump operations.
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JSET: u8 = 0x40;
const JNE: u8 = 0x50;
const JLT: u8 = 0xa0;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;

/// Load and store widths.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Size {
    /// 8 bits.
    B = 0x10,
    /// 16 bits.
    H = 0x08,
    /// 32 bits.
    W = 0x00,
}

/// Jump conditions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cond {
    /// `==`
    Eq = JEQ as isize,
    /// `!=`
    Ne = JNE as isize,
    /// unsigned `>`
    Gt = JGT as isize,
    /// unsigned `<`
    Lt = JLT as isize,
    /// `dst & src != 0`
    Set = JSET as isize,
}

/// A program being written: instructions, and jumps waiting for their label.
#[derive(Debug, Default)]
pub(crate) struct Asm {
    insns: Vec<BpfInsn>,
    /// (slot of the jump, label)
    fixups: Vec<(usize, &'static str)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) -> &mut Self {
        self.insns.push(BpfInsn::new(code, dst, src, off, imm));
        self
    }

    /// `dst = *(size *)(src + off)`
    pub(crate) fn load(&mut self, size: Size, dst: u8, src: u8, off: i16) -> &mut Self {
        self.push(LDX | MEM | size as u8, dst, src, off, 0)
    }

    /// `*(u32 *)(dst + off) = src`
    pub(crate) fn store_w(&mut self, dst: u8, off: i16, src: u8) -> &mut Self {
        self.push(STX | MEM | Size::W as u8, dst, src, off, 0)
    }

    /// `dst = imm` (64-bit register, sign-extended immediate).
    pub(crate) fn mov_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.push(ALU64 | MOV | K, dst, 0, 0, imm)
    }

    /// `dst = src`
    pub(crate) fn mov_x(&mut self, dst: u8, src: u8) -> &mut Self {
        self.push(ALU64 | MOV | X, dst, src, 0, 0)
    }

    /// `dst += imm`
    pub(crate) fn add_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.push(ALU64 | ADD | K, dst, 0, 0, imm)
    }

    /// `dst += src`
    pub(crate) fn add_x(&mut self, dst: u8, src: u8) -> &mut Self {
        self.push(ALU64 | ADD | X, dst, src, 0, 0)
    }

    /// `dst &= imm`
    pub(crate) fn and_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.push(ALU64 | AND | K, dst, 0, 0, imm)
    }

    /// `dst <<= imm`
    pub(crate) fn lsh_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.push(ALU64 | LSH | K, dst, 0, 0, imm)
    }

    /// `dst >>= imm`
    pub(crate) fn rsh_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.push(ALU64 | RSH | K, dst, 0, 0, imm)
    }

    /// `dst >>= src`
    pub(crate) fn rsh_x(&mut self, dst: u8, src: u8) -> &mut Self {
        self.push(ALU64 | RSH | X, dst, src, 0, 0)
    }

    /// `dst = be16(dst)`, then `dst &= 0xffff` so the verifier knows the bounds (older
    /// kernels forget them on `END`): a 16-bit field read in network order, in host order.
    pub(crate) fn be16(&mut self, dst: u8) -> &mut Self {
        self.push(ALU | END | TO_BE, dst, 0, 0, 16);
        self.and_k(dst, 0xffff)
    }

    /// `dst = map` (`BPF_LD_IMM64` with `BPF_PSEUDO_MAP_FD`): two slots.
    pub(crate) fn ld_map(&mut self, dst: u8, map_fd: i32) -> &mut Self {
        self.push(
            IMM_DW,
            dst,
            crate::backend::linux::sys::BPF_PSEUDO_MAP_FD,
            0,
            map_fd,
        );
        self.push(0, 0, 0, 0, 0)
    }

    /// `call helper`
    pub(crate) fn call(&mut self, helper: i32) -> &mut Self {
        self.push(JMP | CALL, 0, 0, 0, helper)
    }

    /// `exit` (returns `r0`).
    pub(crate) fn exit(&mut self) -> &mut Self {
        self.push(JMP | EXIT, 0, 0, 0, 0)
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: &'static str) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(code, dst, src, 0, imm)
    }

    /// `goto to`
    pub(crate) fn ja(&mut self, to: &'static str) -> &mut Self {
        self.jump(JMP | JA, 0, 0, 0, to)
    }

    /// `if dst <cond> imm goto to`
    pub(crate) fn jmp_k(&mut self, cond: Cond, dst: u8, imm: i32, to: &'static str) -> &mut Self {
        self.jump(JMP | cond as u8 | K, dst, 0, imm, to)
    }

    /// `if dst <cond> src goto to`
    pub(crate) fn jmp_x(&mut self, cond: Cond, dst: u8, src: u8, to: &'static str) -> &mut Self {
        self.jump(JMP | cond as u8 | X, dst, src, 0, to)
    }

    /// Places `name` at the next instruction. Labels are unique.
    pub(crate) fn label(&mut self, name: &'static str) -> &mut Self {
        debug_assert!(self.labels.iter().all(|(l, _)| *l != name), "{name} twice");
        self.labels.push((name, self.insns.len()));
        self
    }

    /// The instructions with every jump pointing at its label. Panics on a jump to a label
    /// never placed or a backward jump: both are bugs in the program text, which the tests
    /// load.
    pub(crate) fn finish(mut self) -> Vec<BpfInsn> {
        for &(at, name) in &self.fixups {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == name)
                .unwrap_or_else(|| panic!("eBPF label {name} not placed"))
                .1;
            assert!(target > at, "eBPF jump to {name} goes backwards");
            self.insns[at].off = i16::try_from(target - at - 1).expect("jump within 32767 slots");
        }
        self.insns
    }
}
