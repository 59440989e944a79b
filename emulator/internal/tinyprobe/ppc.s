# Tiny probe for the powerpc family: uname(2), then write(1, machine +
# "\n"), exit. Assembled as is for ppc (32-bit); with --defsym PPC64=1
# for ppc64 (ELFv1: the entry point is a function descriptor) and with
# --defsym PPC64=1 --defsym ELFV2=1 for ppc64le (ELFv2: the entry point
# is the code).
# System calls: number in r0, arguments in r3, r4, r5; sc. On failure
# the summary overflow bit of cr0 is set and r3 holds the errno.
.ifdef PPC64
.ifdef ELFV2
	.abiversion 2
	.text
	.globl	_start
_start:
.else
	.abiversion 1
	.section .opd, "aw"
	.align	3
	.globl	_start
_start:
	.quad	.L.start, .TOC.@tocbase, 0
	.text
.L.start:
.endif
.else
	.text
	.globl	_start
_start:
.endif
	addi	1, 1, -400		# struct new_utsname (390 bytes)
	mr	3, 1
	li	0, 122			# uname (newuname)
	sc
	cmpwi	3, 0
	bne	3f
	addi	4, 1, 260		# its machine field
	mr	5, 4
1:	lbz	6, 0(5)			# find the NUL
	cmpwi	6, 0
	beq	2f
	addi	5, 5, 1
	b	1b
2:	li	6, 10			# and make it "\n"
	stb	6, 0(5)
	addi	5, 5, 1
	subf	5, 4, 5
	li	3, 1
	li	0, 4			# write
	sc
	li	3, 0
	b	4f
3:	li	3, 1
4:	li	0, 1			# exit
	sc
