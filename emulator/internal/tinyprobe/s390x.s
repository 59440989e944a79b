# Tiny probe for s390x: uname(2), then write(1, machine + "\n"), exit.
# System calls: svc with the number (below 256), arguments in %r2, %r3,
# %r4, result in %r2.
	.text
	.globl	_start
_start:
	aghi	%r15, -400		# struct new_utsname (390 bytes)
	lgr	%r2, %r15
	svc	122			# uname (newuname)
	ltgr	%r2, %r2
	jnz	3f
	la	%r3, 260(%r15)		# its machine field
	lgr	%r4, %r3
1:	cli	0(%r4), 0		# find the NUL
	je	2f
	la	%r4, 1(%r4)
	j	1b
2:	mvi	0(%r4), 10		# and make it "\n"
	la	%r4, 1(%r4)
	sgr	%r4, %r3
	lghi	%r2, 1
	svc	4			# write
	lghi	%r2, 0
	j	4f
3:	lghi	%r2, 1
4:	svc	1			# exit
