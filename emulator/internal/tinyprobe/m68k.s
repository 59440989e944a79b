| Tiny probe for m68k: uname(2), then write(1, machine + "\n"), exit.
| System calls: number in %d0, arguments in %d1, %d2, %d3; trap #0.
	.text
	.globl	_start
_start:
	lea	-400(%sp), %sp		| struct new_utsname (390 bytes)
	move.l	%sp, %d1
	moveq	#122, %d0		| uname (newuname)
	trap	#0
	tst.l	%d0
	bne.s	3f
	lea	260(%sp), %a0		| its machine field
	move.l	%a0, %d2
1:	tst.b	(%a0)+			| find the NUL
	bne.s	1b
	move.b	#10, -(%a0)		| and make it "\n"
	addq.l	#1, %a0
	move.l	%a0, %d3
	sub.l	%d2, %d3
	moveq	#1, %d1
	moveq	#4, %d0			| write
	trap	#0
	moveq	#0, %d1
	bra.s	4f
3:	moveq	#1, %d1
4:	moveq	#1, %d0			| exit
	trap	#0
