; Tiny probe for hppa (32-bit PA-RISC): uname(2), then
; write(1, machine + "\n"), exit.
; System calls: number in %r20, arguments in %r26, %r25, %r24, result in
; %r28; ble 0x100(%sr2, %r0), with the number loaded in its delay slot.
; The stack grows upwards: the buffer is above %sp.
	.text
	.globl	_start
_start:
	ldo	64(%sp), %r26		; struct new_utsname (390 bytes)
	ble	0x100(%sr2, %r0)
	ldi	59, %r20		; uname (newuname)
	comib,<>	0, %r28, fail
	nop
	ldo	64+260(%sp), %r25	; its machine field
	copy	%r25, %r24
loop:
	ldb	0(%r24), %r19		; find the NUL
	comib,=	0, %r19, done
	nop
	b	loop
	ldo	1(%r24), %r24
done:
	ldi	10, %r19		; and make it "\n"
	stb	%r19, 0(%r24)
	ldo	1(%r24), %r24
	sub	%r24, %r25, %r24
	ldi	1, %r26
	ble	0x100(%sr2, %r0)
	ldi	4, %r20			; write
	b	exit
	ldi	0, %r26
fail:
	ldi	1, %r26
exit:
	ble	0x100(%sr2, %r0)
	ldi	1, %r20			; exit
