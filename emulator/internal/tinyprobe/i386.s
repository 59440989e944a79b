# Tiny probe for i386: uname(2), then write(1, machine + "\n"), exit.
# System calls: number in %eax, arguments in %ebx, %ecx, %edx; int $0x80.
	.text
	.globl	_start
_start:
	sub	$400, %esp		# struct new_utsname (390 bytes)
	mov	%esp, %ebx
	mov	$122, %eax		# uname (newuname)
	int	$0x80
	test	%eax, %eax
	jnz	3f
	lea	260(%esp), %ecx		# its machine field
	mov	%ecx, %edx
1:	cmpb	$0, (%edx)		# find the NUL
	je	2f
	inc	%edx
	jmp	1b
2:	movb	$10, (%edx)		# and make it "\n"
	inc	%edx
	sub	%ecx, %edx
	mov	$1, %ebx
	mov	$4, %eax		# write
	int	$0x80
	xor	%ebx, %ebx
	jmp	4f
3:	mov	$1, %ebx
4:	mov	$1, %eax		# exit
	int	$0x80
