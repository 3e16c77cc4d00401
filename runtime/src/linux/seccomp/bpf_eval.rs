//! A classic-BPF interpreter for the instructions seccomp filters use, so that tests can run a
//! compiled profile against syscall numbers this kernel cannot issue (x32 ones) and read the
//! answer the kernel would give: each filter evaluated, the most restrictive action kept (the most
//! recently installed filter's on a tie), as `seccomp_run_filters` does.
//!
//! Must not: be used outside tests.

use seccompiler::BpfProgram;

/// `struct seccomp_data` of one call.
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Data {
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => 0, // instruction pointer
            o if (16..64).contains(&o) && o % 4 == 0 => {
                let arg = self.args[((o - 16) / 8) as usize];
                // Little-endian halves: the low word first.
                if (o - 16) % 8 == 0 {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            o => panic!("load of offset {o}"),
        }
    }
}

/// What one filter returns for `data`.
pub fn run(program: &BpfProgram, data: &Data) -> u32 {
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = program[pc].clone();
        pc += 1;
        let class = i.code & 0x07;
        match class {
            0x00 => {
                assert_eq!(i.code, 0x20, "only LD W ABS is emitted");
                a = data.word(i.k);
            }
            0x04 => match i.code & 0xf0 {
                0x50 => a &= i.k,
                0x40 => a |= i.k,
                op => panic!("alu op {op:#x}"),
            },
            0x05 => {
                let taken = match i.code & 0xf0 {
                    0x00 => {
                        pc += i.k as usize;
                        continue;
                    }
                    0x10 => a == i.k,
                    0x20 => a > i.k,
                    0x30 => a >= i.k,
                    0x40 => a & i.k != 0,
                    op => panic!("jmp op {op:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            0x06 => return i.k,
            other => panic!("class {other:#x}"),
        }
    }
}

/// The answer of a stack of filters installed in order.
pub fn run_all(filters: &[BpfProgram], data: &Data) -> u32 {
    let precedence = |ret: u32| (ret & 0xffff_0000) as i32;
    let mut out = 0x7fff_0000; // allow
    for f in filters.iter().rev() {
        let ret = run(f, data);
        if precedence(ret) < precedence(out) {
            out = ret;
        }
    }
    out
}
