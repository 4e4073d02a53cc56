/* Exact guest-instruction timestamps on QEMU's MPS2 boards under
 * `-icount shift=0` (one nanosecond of virtual time per instruction).
 *
 * The counter is CMSDK APB timer 0 (0x40000000), a 32-bit down-counter
 * clocked by the board's 25 MHz PCLK: under icount it ticks exactly every
 * 40 instructions, so a single read says the time to within 40
 * instructions. A mark recovers the exact instruction by a vernier:
 * it spins until the counter ticks (a 4-instruction loop, so the tick is
 * pinned to within 4 instructions), waits 32 instructions, and then reads
 * the counter on 5 consecutive instructions, which straddle the next tick:
 * the first read that sees it is exactly on the tick. The host decodes a
 * mark's record (see `nnc::mcu::Mark`) into the exact time of the mark's
 * first instruction (its entry) and of the first instruction after it
 * returns (its exit); everything between two marks is then known to the
 * instruction. Every mark routine below has the same instruction layout;
 * the host's decoding depends on it, and the calibration test checks it.
 *
 * Only ARMv6-M instructions are used, so the same code runs on Cortex-M0,
 * M3, M4 and M7. No interrupts are involved. */
    .syntax unified
    .thumb
    .text

    .equ NNC_TIMER0, 0x40000000

/* A mark routine NAME(r0 = slot) writing 8 words at ARRAY + 32 * slot:
 * w4, w0, loop count, tick-before value, w1, w2, w3 (and one unused).
 * INDEX is one instruction that turns the argument into the slot.
 * Instruction offsets from the entry: push 0, INDEX 1, lsls 2, ldr 3,
 * adds 4, ldr 5, first read 6, movs 7, spin loop from 8 (4 per
 * iteration), then 32 nops, the 5 window reads, stmia, pop. */
.macro NNC_MARK name, index, array
    .global \name
    .type \name, %function
    .thumb_func
    .align 2
\name:
    push {r4, r5, r6, r7, lr}
    \index
    lsls r0, r0, #5
    ldr r1, =\array
    adds r0, r0, r1
    ldr r1, =NNC_TIMER0
    ldr r2, [r1, #4]
    movs r3, #0
1:  ldr r4, [r1, #4]
    adds r3, r3, #1
    cmp r4, r2
    beq 1b
    .rept 32
    nop
    .endr
    ldr r2, [r1, #4]
    ldr r5, [r1, #4]
    ldr r6, [r1, #4]
    ldr r7, [r1, #4]
    ldr r1, [r1, #4]
    stmia r0!, {r1-r7}
    pop {r4, r5, r6, r7, pc}
    .ltorg
    .size \name, . - \name
.endm

/* Two slots around one call of the model: see nnc_mcu_measure. */
    .bss
    .align 3
    .global nnc_mcu_meas
nnc_mcu_meas:
    .space 64
    .text

NNC_MARK nnc_mcu_meas_mark, "adds r0, r0, #0", nnc_mcu_meas

/* int nnc_mcu_measure(fn, inputs, outputs, arena): calls
 * fn(inputs, outputs, arena) between two marks and returns its result.
 * Between the exit of the first mark and the entry of the second, exactly
 * 7 instructions run besides fn's own (3 movs and the blx before it, a
 * mov, a movs and the bl after it), so fn executed
 * entry(slot 1) - exit(slot 0) - 7 instructions, counting from its first
 * instruction to its return. */
    .global nnc_mcu_measure
    .type nnc_mcu_measure, %function
    .thumb_func
    .align 2
nnc_mcu_measure:
    push {r4, r5, r6, r7, lr}
    mov r4, r8
    mov r5, r9
    mov r6, r10
    mov r7, r11
    push {r4, r5, r6, r7}
    sub sp, sp, #4          /* 40 bytes pushed: the stack stays 8-aligned */
    mov r8, r0
    mov r9, r1
    mov r10, r2
    mov r11, r3
    movs r0, #0
    bl nnc_mcu_meas_mark
    mov r0, r9
    mov r1, r10
    mov r2, r11
    blx r8
    mov r9, r0
    movs r0, #1
    bl nnc_mcu_meas_mark
    mov r0, r9
    add sp, sp, #4
    pop {r4, r5, r6, r7}
    mov r8, r4
    mov r9, r5
    mov r10, r6
    mov r11, r7
    pop {r4, r5, r6, r7, pc}
    .size nnc_mcu_measure, . - nnc_mcu_measure

#ifdef NNC_PROFILE
/* The model's per-step hooks (-DNNC_PROFILE): slot 0 is the start of the
 * run, slot i + 1 the end of step i. The generated firmware main defines
 * nnc_mcu_prof with a slot per step plus one. A step's count runs from
 * the exit of the previous hook to the entry of its own, so it includes
 * the two instructions of its hook call (movs r0, #i; bl). */
NNC_MARK nnc_profile_begin, "movs r0, #0", nnc_mcu_prof
NNC_MARK nnc_profile_step, "adds r0, r0, #1", nnc_mcu_prof
#endif
