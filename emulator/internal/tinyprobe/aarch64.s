// Tiny probe for aarch64 and aarch64_be: uname(2), then
// write(1, machine + "\n"), exit.
// System calls: number in x8, arguments in x0, x1, x2; svc #0.
	.text
	.globl	_start
_start:
	sub	sp, sp, #400		// struct new_utsname (390 bytes)
	mov	x0, sp
	mov	x8, #160		// uname
	svc	#0
	cbnz	x0, 3f
	add	x1, sp, #260		// its machine field
	mov	x2, x1
1:	ldrb	w3, [x2]		// find the NUL
	cbz	w3, 2f
	add	x2, x2, #1
	b	1b
2:	mov	w3, #10			// and make it "\n"
	strb	w3, [x2], #1
	sub	x2, x2, x1
	mov	x0, #1
	mov	x8, #64			// write
	svc	#0
	mov	x0, #0
	b	4f
3:	mov	x0, #1
4:	mov	x8, #93			// exit
	svc	#0
