@ Tiny probe for arm and armeb (EABI, A32 instructions): uname(2), then
@ write(1, machine + "\n"), exit.
@ System calls: number in r7, arguments in r0, r1, r2; svc #0.
	.syntax	unified
	.arm
	.text
	.globl	_start
_start:
	sub	sp, sp, #400		@ struct new_utsname (390 bytes)
	mov	r0, sp
	mov	r7, #122		@ uname (newuname)
	svc	#0
	cmp	r0, #0
	bne	3f
	add	r1, sp, #260		@ its machine field
	mov	r2, r1
1:	ldrb	r3, [r2]		@ find the NUL
	cmp	r3, #0
	addne	r2, r2, #1
	bne	1b
	mov	r3, #10			@ and make it "\n"
	strb	r3, [r2], #1
	sub	r2, r2, r1
	mov	r0, #1
	mov	r7, #4			@ write
	svc	#0
	mov	r0, #0
	b	4f
3:	mov	r0, #1
4:	mov	r7, #1			@ exit
	svc	#0
