! Tiny probe for the sparc family: uname(2), then write(1, machine +
! "\n"), exit. Assembled as is for sparc (V8); with --defsym V9=1 for
! sparc32plus (V8+: 32-bit with V9 instructions, which makes the
! assembler mark the object EM_SPARC32PLUS); with --defsym V9=1
! --defsym SPARC64=1 for sparc64, where the stack pointer is biased by
! 2047 and system calls trap to 0x6d rather than 0x10.
! System calls: number in %g1, arguments in %o0, %o1, %o2; ta. On
! failure the carry is set and %o0 holds the errno. Branches have a
! delay slot.
.ifdef SPARC64
	BIAS = 2047
	TRAP = 0x6d
.else
	BIAS = 0
	TRAP = 0x10
.endif
	.text
	.globl	_start
_start:
	add	%sp, BIAS-400, %o0	! struct new_utsname (390 bytes)
	mov	189, %g1		! uname (newuname)
	ta	TRAP
	cmp	%o0, 0
	bne	3f
	 nop
	add	%sp, BIAS-400+260, %o1	! its machine field
	mov	%o1, %o2
1:	ldub	[%o2], %g2		! find the NUL
.ifdef V9
	brnz,a,pt %g2, 1b
	 add	%o2, 1, %o2
.else
	cmp	%g2, 0
	bne,a	1b
	 add	%o2, 1, %o2
.endif
	mov	10, %g2			! and make it "\n"
	stb	%g2, [%o2]
	add	%o2, 1, %o2
	sub	%o2, %o1, %o2
	mov	1, %o0
	mov	4, %g1			! write
	ta	TRAP
	ba	4f
	 mov	0, %o0
3:	mov	1, %o0
4:	mov	1, %g1			! exit
	ta	TRAP
