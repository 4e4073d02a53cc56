//! What firmware for QEMU's Arm MPS2 boards links with: startup code, the
//! linker script, and the benchmark runtime `nnc bench --target cortex-mN`
//! builds around a model (an exact guest-instruction clock and the main
//! loop that reports over semihosting). The files live in `runtime/mcu/`;
//! `examples/cortex-m` builds from the same startup code and linker script.

/// Vector table, `.data`/`.bss` set-up, FPU enable, then `main`; weak
/// fault handlers.
pub const STARTUP_C: &str = include_str!("../mcu/startup.c");

/// Memory map of the MPS2 boards (AN385, AN386, AN500): 4 MiB of flash at
/// 0, 4 MiB of RAM at 0x20000000, at least [`MIN_STACK_BYTES`] of stack.
pub const LINKER_SCRIPT: &str = include_str!("../mcu/mps2.ld");

/// The stack the linker script reserves above `.bss` (`_min_stack`).
pub const MIN_STACK_BYTES: usize = 0x10000;

/// Interface of the benchmark runtime.
pub const MCU_H: &str = include_str!("../mcu/nnc_mcu.h");

/// The benchmark main loop, output checks and fault handler.
pub const MCU_C: &str = include_str!("../mcu/nnc_mcu.c");

/// The instruction clock: mark routines, `nnc_mcu_measure` and the
/// `NNC_PROFILE` step hooks (ARMv6-M assembly).
pub const CLOCK_S: &str = include_str!("../mcu/nnc_mcu_clock.S");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linker_script_reserves_the_stack_the_constant_says() {
        assert!(LINKER_SCRIPT.contains(&format!("_min_stack = {MIN_STACK_BYTES:#x};")));
    }
}
