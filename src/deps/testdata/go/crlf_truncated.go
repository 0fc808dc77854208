package main

import (
	"fmt"
	"example.com/m/ÿþ"
	// "commented/out"
	"example.com/m/trunc