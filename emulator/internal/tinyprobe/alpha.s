# Tiny probe for alpha: uname(2), then write(1, machine + "\n"), exit.
# System calls: number in $0 (v0), arguments in $16, $17, $18 (a0-a2);
# callsys. On failure $19 (a3) is set and $0 holds the errno, so a
# result of 0 is success here as everywhere.
	.arch	ev56			# ldbu and stb (BWX)
	.set	noat
	.set	noreorder
	.text
	.globl	_start
	.ent	_start
_start:
	lda	$sp, -400($sp)		# struct new_utsname (390 bytes)
	mov	$sp, $16
	lda	$0, 339($31)		# uname (newuname)
	callsys
	bne	$0, 3f
	lda	$17, 260($sp)		# its machine field
	mov	$17, $18
1:	ldbu	$1, 0($18)		# find the NUL
	beq	$1, 2f
	addq	$18, 1, $18
	br	1b
2:	lda	$1, 10($31)		# and make it "\n"
	stb	$1, 0($18)
	addq	$18, 1, $18
	subq	$18, $17, $18
	lda	$16, 1($31)
	lda	$0, 4($31)		# write
	callsys
	mov	$31, $16
	br	4f
3:	lda	$16, 1($31)
4:	lda	$0, 1($31)		# exit
	callsys
	.end	_start
