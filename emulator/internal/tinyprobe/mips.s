# Tiny probe for the mips family: uname(2), then write(1, machine +
# "\n"), exit. Assembled with --defsym NR=4000 for o32 (mips, mipsel),
# 5000 for n64 (mips64, mips64el) or 6000 for n32 (mipsn32, mipsn32el):
# the base of the ABI's system call numbers.
# System calls: number in $v0, arguments in $a0, $a1, $a2; syscall. On
# failure $a3 is set. The assembler fills the delay slots (.set reorder).
	.set	reorder
	.text
	.globl	_start
	.ent	_start
_start:
.if NR == 5000
	daddiu	$sp, $sp, -400		# struct new_utsname (390 bytes)
.else
	addiu	$sp, $sp, -400
.endif
	move	$a0, $sp
.if NR == 4000
	li	$v0, NR+122		# uname (newuname)
.else
	li	$v0, NR+61
.endif
	syscall
	bnez	$a3, 3f
.if NR == 5000
	daddiu	$a1, $sp, 260		# its machine field
.else
	addiu	$a1, $sp, 260
.endif
	move	$a2, $a1
1:	lbu	$t0, 0($a2)		# find the NUL
	beqz	$t0, 2f
.if NR == 5000
	daddiu	$a2, $a2, 1
.else
	addiu	$a2, $a2, 1
.endif
	b	1b
2:	li	$t0, 10			# and make it "\n"
	sb	$t0, 0($a2)
.if NR == 5000
	daddiu	$a2, $a2, 1
	dsubu	$a2, $a2, $a1
.else
	addiu	$a2, $a2, 1
	subu	$a2, $a2, $a1
.endif
	li	$a0, 1
.if NR == 4000
	li	$v0, NR+4		# write
.else
	li	$v0, NR+1
.endif
	syscall
	li	$a0, 0
	b	4f
3:	li	$a0, 1
.if NR == 4000
4:	li	$v0, NR+1		# exit
.else
4:	li	$v0, NR+58
.endif
	syscall
	.end	_start
