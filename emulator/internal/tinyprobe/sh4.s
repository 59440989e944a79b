! Tiny probe for sh4 and sh4eb: uname(2), then write(1, machine + "\n"),
! exit.
! System calls: number in r3, arguments in r4, r5, r6, result in r0;
! trapa #0x10 plus the number of arguments. bra has a delay slot.
	.text
	.globl	_start
_start:
	mov.l	.Lsize, r0
	sub	r0, r15			! struct new_utsname (390 bytes)
	mov	r15, r4
	mov	#122, r3		! uname (newuname)
	trapa	#0x11
	tst	r0, r0
	bf	3f
	mov	r15, r5
	mov.l	.Lmachine, r0
	add	r0, r5			! its machine field
	mov	r5, r6
1:	mov.b	@r6, r0			! find the NUL
	tst	r0, r0
	bt	2f
	bra	1b
	add	#1, r6
2:	mov	#10, r0			! and make it "\n"
	mov.b	r0, @r6
	add	#1, r6
	sub	r5, r6
	mov	#1, r4
	mov	#4, r3			! write
	trapa	#0x13
	bra	4f
	mov	#0, r4
3:	mov	#1, r4
4:	mov	#1, r3			! exit
	trapa	#0x11
	.align	2
.Lsize:	.long	400
.Lmachine:
	.long	260
